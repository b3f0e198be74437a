"""Train the tokenizer with ``accelerate``: one process here, DDP under ``accelerate launch``.

Resumable to the step: the batch at step ``t`` is a pure function of (seed, t) (a fresh permutation of the
data each epoch), and the checkpoint holds model, optimizer and RNG state, so a run killed with SIGKILL and
resumed continues with the same batches and the same losses as one that never stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from .atomic import write_text
from .checkpoint import load_checkpoint, save_checkpoint
from .config import VQPreset
from .loss import vq_loss
from .model import VQModel
from .stats import code_histogram, codebook_stats

logger = logging.getLogger(__name__)
CHECKPOINT_NAME = "checkpoint.safetensors"


def batch_indices(seed: int, step: int, num: int, batch_size: int) -> torch.Tensor:
    """Indices of the global batch at ``step``: the data in a seeded random order, reshuffled every epoch."""
    positions = torch.arange(step * batch_size, (step + 1) * batch_size)
    epochs, offsets = positions // num, positions % num
    out = torch.empty(batch_size, dtype=torch.long)
    for epoch in epochs.unique().tolist():
        perm = torch.randperm(num, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        mask = epochs == epoch
        out[mask] = perm[offsets[mask]]
    return out


def state_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def append_metrics(accelerator: Accelerator, path: Path, record: dict) -> None:
    if accelerator.is_main_process:
        with path.open("a") as f:
            f.write(json.dumps(record) + "\n")


class RunClock:
    """Training seconds of a run, summed over every process start: kept in the checkpoint's metadata."""

    def __init__(self, prior_seconds: float = 0.0):
        self.prior, self.start = prior_seconds, time.monotonic()

    @property
    def seconds(self) -> float:
        return self.prior + time.monotonic() - self.start

    def extra(self) -> dict:
        return {"train_seconds": round(self.seconds, 1)}

    @classmethod
    def resumed(cls, metadata: dict, metrics_file: Path, batch_size: int) -> "RunClock":
        prior = metadata.get("extra", {}).get("train_seconds")
        if prior is None and metrics_file.exists():
            # A checkpoint from before the clock was kept: the first segment's own throughput gives its time.
            records = [json.loads(line) for line in metrics_file.read_text().splitlines()]
            done = [r for r in records if r["step"] <= metadata["step"]]
            prior = done[-1]["step"] * batch_size / done[-1]["images_per_s"] if done else 0.0
        return cls(prior or 0.0)


def finish_run(accelerator: Accelerator, model: torch.nn.Module, optimizer: torch.optim.Optimizer, ckpt_path: Path,
               step: int, save_final, clock: RunClock) -> None:
    """End a run: each process records a digest of its replica (so a run can prove they agree), then the main
    process writes the last checkpoint, ``training.json`` (steps, training seconds) and calls
    ``save_final(unwrapped_model)``."""
    unwrapped = accelerator.unwrap_model(model)
    (ckpt_path.parent / f"weights-rank{accelerator.process_index}.sha256").write_text(state_digest(unwrapped))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_checkpoint(ckpt_path, unwrapped, optimizer, step, extra=clock.extra())
        write_text(ckpt_path.parent / "training.json",
                   json.dumps({"steps": step, "processes": accelerator.num_processes, **clock.extra()}, indent=2))
        save_final(unwrapped)
    accelerator.wait_for_everyone()


def learning_rate(step: int, base: float, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 10% of ``base``."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_vq(preset: VQPreset, images: torch.Tensor, out_dir: str | Path, max_minutes: float | None = None,
             resume: bool = False, stop_after: int | None = None, progress: bool = True) -> Path:
    """Train on ``images`` (uint8 (N, 3, S, S)); writes ``out_dir/model`` and returns its path.

    ``stop_after`` ends the run after that many steps as if it had been killed (after its checkpoint, if due).
    """
    model_cfg, cfg = preset.model, preset.train
    if images.dtype != torch.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != (3, model_cfg.image_size,
                                                                                         model_cfg.image_size):
        raise ValueError(f"images must be uint8 (N, 3, {model_cfg.image_size}, {model_cfg.image_size}), got "
                         f"{images.dtype} {tuple(images.shape)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / CHECKPOINT_NAME
    if ckpt_path.exists() and not resume:
        raise ValueError(f"{ckpt_path} exists: pass resume=True (--resume) to continue it, or choose another --out")

    # Without a GPU, ask for the CPU explicitly: only then do processes started by torchrun (what
    # `accelerate launch --multi_gpu` runs) join one gloo group instead of each training alone.
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    set_seed(cfg.seed)  # model initialisation; the data order has its own generator
    model = VQModel(model_cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    step = 0
    if resume and ckpt_path.exists():
        metadata = load_checkpoint(ckpt_path, model, optimizer)
        step = metadata["step"]
        logger.info("resumed from %s at step %d", ckpt_path, step)
    model, optimizer = accelerator.prepare(model, optimizer)
    if accelerator.is_main_process:
        write_text(out_dir / "preset.json", json.dumps({"model": model_cfg.to_dict(), "train": asdict(cfg)}, indent=2))

    rank, world = accelerator.process_index, accelerator.num_processes
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the {world} processes")
    metrics_file = out_dir / "metrics.jsonl"
    counts = torch.zeros(model_cfg.vocab_size, dtype=torch.long)
    clock = (RunClock.resumed(metadata, out_dir / "metrics.jsonl", cfg.batch_size) if step else RunClock())
    start, seen = time.monotonic(), 0
    bar = tqdm(total=cfg.max_steps, initial=step, desc="train vq",
               disable=not progress or not accelerator.is_main_process)
    model.train()
    while step < cfg.max_steps:
        if max_minutes is not None and time.monotonic() - start > max_minutes * 60:
            break
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, cfg.lr, cfg.warmup_steps, cfg.max_steps)
        idx = batch_indices(cfg.seed, step, len(images), cfg.batch_size)[rank::world]
        x = images[idx].to(accelerator.device).float().div(255)
        out = model(x)
        loss, parts = vq_loss(out.images, x, out.commit_loss, cfg.l1_weight, cfg.l2_weight)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        seen += len(idx) * world
        counts += code_histogram(out.ids.detach().cpu(), model_cfg.vocab_size)
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            stats = codebook_stats(counts)
            record = {"step": step, "loss": loss.item(), **parts, "usage": stats["usage"],
                      "images_per_s": seen / (time.monotonic() - start)}
            counts.zero_()
            append_metrics(accelerator, metrics_file, record)
            bar.set_postfix(loss=f"{record['loss']:.4f}", usage=f"{record['usage']:.2f}",
                            img_s=f"{record['images_per_s']:.0f}")
        bar.update()
        if step % cfg.checkpoint_every == 0 and accelerator.is_main_process:
            save_checkpoint(ckpt_path, accelerator.unwrap_model(model), optimizer, step, extra=clock.extra())
        if stop_after is not None and step >= stop_after:
            bar.close()
            return out_dir / "model"
    bar.close()
    finish_run(accelerator, model, optimizer, ckpt_path, step, lambda m: m.save_pretrained(out_dir / "model"),
               clock)
    return out_dir / "model"
