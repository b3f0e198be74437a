"""``t2i bench train``: what one training step of each AR preset costs here, side by side in one run.

Equal-compute ablations need the price of a step: a layout with structural tokens makes every sequence longer,
a wider model or a bigger batch costs more per step. Each variant trains on random token sequences of its
preset's shape (the data pipeline is not timed), with the variants taking turns, and the report gives seconds
per step, images per hour of this machine, and each variant's cost relative to the first.

Diffusion presets (the baseline) are priced the same way, on random images and captions, because the AR-vs-
diffusion comparison wants equal training budgets and a wall-clock budget recorded on one machine says little
about a run on another (the same decoder step took 0.86 s on one 2-core machine and 1.7 s on the next): steps
times both prices measured here, in one run, compare the two budgets on a common machine.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from pathlib import Path

import torch

from tools.train.ar import sequence_loss, training_forward, training_model
from hybrid.baseline import DiffusionBaseline
from hybrid.schedulers import diffusion_target, make_training_scheduler
from tools.train.config import ARPreset, DiffusionPreset


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


def _diffusion_variant(preset: DiffusionPreset, text_vocab_size: int):
    """One step of the baseline's trainer (``tools.train.diffusion``): noise, forward, v-loss, AdamW, in float32
    as it trains, on random images and random-length captions of its shape."""
    cfg, config = preset.train, preset.with_model(text_vocab_size=text_vocab_size).model
    torch.manual_seed(0)
    model = DiffusionBaseline(config)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    scheduler = make_training_scheduler(config)
    batch, size, length = cfg.batch_size, config.image_size, config.max_caption_tokens
    clean = torch.rand(batch, 3, size, size) * 2 - 1
    ids = torch.randint(0, text_vocab_size, (batch, length))
    ids[torch.arange(length) >= torch.randint(length // 2, length + 1, (batch, 1))] = config.pad_id

    def step() -> None:
        t = torch.randint(0, len(scheduler.alphas_cumprod), (batch,))
        noise = torch.randn_like(clean)
        prediction = model(scheduler.add_noise(clean, noise, t), t, ids)
        loss = torch.nn.functional.mse_loss(prediction, diffusion_target(scheduler, clean, noise, t))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    params = sum(p.numel() for p in model.parameters())
    return step, {"kind": "diffusion", "params": params, "image_size": size, "batch_size": batch, "bf16": False}


def bench_train(presets: list[str], steps: int = 3, rounds: int = 2, codebook_size: int = 512, grid_size: int = 16,
                bf16: list[bool] | None = None, diffusion: list[str] | None = None, text_vocab_size: int = 448) -> dict:
    """Seconds per training step of every AR preset (file or name) x bf16 setting (default: each preset's own),
    then of every ``diffusion`` preset (the baseline's; ``text_vocab_size``: its caption tokenizer's pieces)."""
    variants = {}
    for name in presets:
        preset = ARPreset.from_json(name) if str(name).endswith(".json") else ARPreset.from_name(name)
        for flag in (bf16 if bf16 is not None else [preset.train.bf16]):
            label = f"{Path(str(name)).stem}{'' if bf16 is None else ', bf16' if flag else ', float32'}"
            variants[label] = _variant(preset, codebook_size, grid_size, flag)
    for name in diffusion or []:
        variants[f"diffusion:{Path(str(name)).stem}"] = _diffusion_variant(
            DiffusionPreset.from_name("diffusion", str(name)), text_vocab_size)
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
        "what": "forward + backward + AdamW step on random inputs of each preset's shape, variants in turns",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "threads": torch.get_num_threads()},
        "steps_timed": n,
        "results": results,
        "step_time_ratio_vs_first": {k: round(v["s_per_step"] / first["s_per_step"], 3) for k, v in results.items()},
    }
