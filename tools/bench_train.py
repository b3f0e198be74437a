"""``t2i bench train``: what one training step of each AR preset costs here, side by side in one run.

Equal-compute ablations need the price of a step: a layout with structural tokens makes every sequence longer,
a wider model or a bigger batch costs more per step. Each variant trains on random token sequences of its
preset's shape (the data pipeline is not timed), with the variants taking turns, and the report gives seconds
per step, images per hour of this machine, and each variant's cost relative to the first.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from pathlib import Path

import torch

from tools.train.ar import sequence_loss, training_forward, training_model
from tools.train.config import ARPreset


def _variant(preset: ARPreset, codebook_size: int, grid_size: int, bf16: bool):
    cfg = preset.train
    config = preset.model_config(cfg.text_vocab_size, codebook_size, grid_size)
    torch.manual_seed(0)
    model, optimizer = training_model(config, cfg)
    model.train()
    seq = torch.randint(config.image_offset, config.vocab_size, (cfg.batch_size, config.max_seq_len))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    forward = training_forward(model, cfg)  # a compiled one compiles at the warm-up step

    def step() -> None:
        with autocast:
            logits = forward(seq[:, :-1])
        loss, _ = sequence_loss(config, cfg, logits, seq)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    params = sum(p.numel() for p in model.parameters())
    return step, {"params": params, "sequence_tokens": config.max_seq_len, "batch_size": cfg.batch_size,
                  "image_layout": config.image_layout, "bf16": bf16, "compile": cfg.compile}


def bench_train(presets: list[str], steps: int = 3, rounds: int = 2, codebook_size: int = 512, grid_size: int = 16,
                bf16: list[bool] | None = None) -> dict:
    """Seconds per training step of every preset (file or name) x bf16 setting (default: each preset's own)."""
    variants = {}
    for name in presets:
        preset = ARPreset.from_json(name) if str(name).endswith(".json") else ARPreset.from_name(name)
        for flag in (bf16 if bf16 is not None else [preset.train.bf16]):
            label = f"{Path(str(name)).stem}{'' if bf16 is None else ', bf16' if flag else ', float32'}"
            variants[label] = _variant(preset, codebook_size, grid_size, flag)
    for step, _ in variants.values():  # warm-up: allocator, kernels
        step()
    elapsed = dict.fromkeys(variants, 0.0)
    for _ in range(rounds):
        for label, (step, _) in variants.items():
            start = time.perf_counter()
            for _ in range(steps):
                step()
            elapsed[label] += time.perf_counter() - start
    n = steps * rounds
    results = {}
    for label, (_, info) in variants.items():
        per_step = elapsed[label] / n
        results[label] = {**info, "s_per_step": round(per_step, 3),
                          "images_per_hour": round(info["batch_size"] * 3600 / per_step)}
    first = next(iter(results.values()))
    return {
        "benchmark": "train",
        "what": "forward + backward + AdamW step on random sequences of each preset's shape, variants in turns",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "threads": torch.get_num_threads()},
        "steps_timed": n,
        "results": results,
        "step_time_ratio_vs_first": {k: round(v["s_per_step"] / first["s_per_step"], 3) for k, v in results.items()},
    }
