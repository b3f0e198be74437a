"""The training loop every model of the project shares, through ``accelerate`` (one process, or DDP under
``accelerate launch``).

Resumable to the step: the batch at step ``t`` is a pure function of (seed, t) (a fresh permutation of the data
each epoch), every other random draw of a step comes from a generator seeded by (seed, t), and the checkpoint
holds model, optimizer and RNG state; so a run killed with SIGKILL and resumed continues with the same batches
and the same losses as one that never stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from vq.pretrained import write_text

from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .init import InitRecord

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


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator of every other random draw of a step (noise, timesteps, caption dropout)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def learning_rate(step: int, base: float, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 10% of ``base``."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def state_digest(model: torch.nn.Module, dtype: torch.dtype | None = None) -> str:
    """sha256 of a module's state, names and bytes; ``dtype`` casts floating tensors first, so that a model
    and its copy in another precision (a release's fp16, loaded as float32) hash alike."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class RunClock:
    """Training seconds of a run, summed over every process start: kept in the checkpoint's metadata."""

    def __init__(self, prior_seconds: float = 0.0):
        self.prior, self.start = prior_seconds, time.monotonic()

    @property
    def seconds(self) -> float:
        return self.prior + time.monotonic() - self.start

    def extra(self) -> dict:
        return {"train_seconds": round(self.seconds, 3)}  # ms: a tiny test run lasts well under 0.1 s

    @classmethod
    def resumed(cls, metadata: dict, metrics_file: Path, batch_size: int) -> "RunClock":
        prior = metadata.get("extra", {}).get("train_seconds")
        if prior is None and metrics_file.exists():
            # A checkpoint from before the clock was kept: the first segment's own throughput gives its time.
            records = [json.loads(line) for line in metrics_file.read_text().splitlines()]
            done = [r for r in records if r["step"] <= metadata["step"]]
            prior = done[-1]["step"] * batch_size / done[-1]["images_per_s"] if done else 0.0
        return cls(prior or 0.0)


def resumed_schedule(metadata: dict, preset_file: Path, step: int, max_steps: int, warmup: int) -> list[dict]:
    """The run's learning-rate schedules so far, one ``{"from_step", "max_steps"}`` per total it was laid over,
    with ``max_steps`` appended when a resume changes it (the cosine is then laid over the new total from
    ``step`` on, so the learning rate jumps there: the record says where). A checkpoint from before the record
    was kept reads its total from the run's previous ``preset.json``."""
    schedule = metadata.get("extra", {}).get("schedule")
    if not schedule:
        previous = json.loads(preset_file.read_text()).get("train", {}) if preset_file.exists() else {}
        schedule = [{"from_step": 0, "max_steps": previous.get("max_steps", max_steps)}]
    if schedule[-1]["max_steps"] != max_steps:
        logger.warning("max_steps changed from %d to %d at step %d: the learning rate jumps from %.3g to %.3g "
                       "of its base here (training.json records the schedules)", schedule[-1]["max_steps"],
                       max_steps, step, learning_rate(step, 1.0, warmup, schedule[-1]["max_steps"]),
                       learning_rate(step, 1.0, warmup, max_steps))
        schedule = [*schedule, {"from_step": step, "max_steps": max_steps}]
    return schedule


@dataclass(frozen=True)
class RunOptions:
    """How a run goes, the same for every trainer: a time limit, whether to continue the folder's checkpoint,
    ``stop_after`` (end after that many steps as if killed, after its checkpoint if due; for tests), a progress
    bar."""

    max_minutes: float | None = None
    resume: bool = False
    stop_after: int | None = None
    progress: bool = True


@dataclass(frozen=True)
class Run:
    """A started run: accelerate, the checkpoint file (its folder holds everything the run writes), the options."""

    accelerator: Accelerator
    ckpt_path: Path
    options: RunOptions

    @property
    def out_dir(self) -> Path:
        return self.ckpt_path.parent


@dataclass(frozen=True)
class TrainTask:
    """What a trainer hands the shared loop: a name for the progress bar, the preset to record in
    ``preset.json``, ``compute_loss(model, step, rank, world)`` returning this process's loss and the numbers to
    log with it, ``save_final(unwrapped_model)``, and optionally more numbers to log (``log_fields()``)."""

    desc: str
    preset_record: dict
    compute_loss: Callable[[torch.nn.Module, int, int, int], tuple[torch.Tensor, dict]]
    save_final: Callable[[torch.nn.Module], None]
    log_fields: Callable[[], dict] | None = None
    init: InitRecord | None = None


def open_run(out_dir: str | Path, options: RunOptions) -> Run:
    """Check the output folder and start accelerate."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / CHECKPOINT_NAME
    if ckpt_path.exists() and not options.resume:
        raise ValueError(f"{ckpt_path} exists: pass resume=True (--resume) to continue it, or choose another --out")
    # Without a GPU, ask for the CPU explicitly: only then do processes started by torchrun (what
    # `accelerate launch --multi_gpu` runs) join one gloo group instead of each training alone.
    return Run(Accelerator(cpu=not torch.cuda.is_available()), ckpt_path, options)


def train_loop(run: Run, model: torch.nn.Module, optimizer: torch.optim.Optimizer, cfg: TrainConfig,
               task: TrainTask) -> bool:
    """Train ``model`` from its checkpoint (if resuming) to ``cfg.max_steps``; True when the run finished.

    At the end each process records a digest of its replica (so a run can prove they agree), and the main
    process writes the last checkpoint, ``training.json`` (steps, training seconds) and calls
    ``task.save_final(unwrapped_model)``.
    """
    accelerator, ckpt_path, options = run.accelerator, run.ckpt_path, run.options
    out_dir = run.out_dir
    metrics_file = out_dir / "metrics.jsonl"
    step, clock = 0, RunClock(task.init.train_seconds if task.init else 0.0)
    schedule = [{"from_step": 0, "max_steps": cfg.max_steps}]
    if options.resume and ckpt_path.exists():
        metadata = load_checkpoint(ckpt_path, model, optimizer)
        step, clock = metadata["step"], RunClock.resumed(metadata, metrics_file, cfg.batch_size)
        schedule = resumed_schedule(metadata, out_dir / "preset.json", step, cfg.max_steps, cfg.warmup_steps)
        logger.info("resumed from %s at step %d", ckpt_path, step)
    model, optimizer = accelerator.prepare(model, optimizer)
    if accelerator.is_main_process:
        write_text(out_dir / "preset.json", json.dumps(task.preset_record, indent=2))
    rank, world = accelerator.process_index, accelerator.num_processes
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the {world} processes")
    start, seen = time.monotonic(), 0
    bar = tqdm(total=cfg.max_steps, initial=step, desc=task.desc,
               disable=not options.progress or not accelerator.is_main_process)
    model.train()
    while step < cfg.max_steps:
        if options.max_minutes is not None and time.monotonic() - start > options.max_minutes * 60:
            break
        lr = learning_rate(step, cfg.lr, cfg.warmup_steps, cfg.max_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss, fields = task.compute_loss(model, step, rank, world)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        seen += cfg.batch_size
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            record = {"step": step, "loss": loss.item(), **fields, **(task.log_fields() if task.log_fields else {}),
                      "lr": lr, "images_per_s": seen / (time.monotonic() - start)}
            if accelerator.is_main_process:
                with metrics_file.open("a") as f:
                    f.write(json.dumps(record) + "\n")
            bar.set_postfix(loss=f"{record['loss']:.4f}", img_s=f"{record['images_per_s']:.1f}",
                            **{k: f"{v:.2f}" for k, v in record.items() if k == "usage"})
        bar.update()
        if step % cfg.checkpoint_every == 0 and accelerator.is_main_process:
            save_checkpoint(ckpt_path, accelerator.unwrap_model(model), optimizer, step,
                            extra={**clock.extra(), "schedule": schedule})
        if options.stop_after is not None and step >= options.stop_after:
            bar.close()
            return False
    bar.close()
    unwrapped = accelerator.unwrap_model(model)
    (out_dir / f"weights-rank{rank}.sha256").write_text(state_digest(unwrapped))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        extra = {**clock.extra(), "schedule": schedule}  # read once: the checkpoint and the record agree
        save_checkpoint(ckpt_path, unwrapped, optimizer, step, extra=extra)
        record = {"steps": step, "processes": world, **extra}
        if task.init is not None:  # train_seconds counts the warm start's own training too
            record["init_from"] = task.init.to_dict()
        write_text(out_dir / "training.json", json.dumps(record, indent=2))
        task.save_final(unwrapped)
    accelerator.wait_for_everyone()
    return step >= cfg.max_steps
