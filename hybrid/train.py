"""Train the refiner or the baseline with ``accelerate`` (one process here, DDP under ``accelerate launch``).

Both learn to denoise: a clean image (in [-1, 1]), a timestep and noise drawn from a generator seeded by
(seed, step), so the batch, the timesteps, the noise and the caption dropout at step ``t`` are pure functions of
(seed, t), and a resumed run repeats the losses of one that never stopped. The refiner's condition is the VQ
reconstruction of the image; the baseline's is the caption (dropped to the null caption with probability
``caption_dropout``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from vq.atomic import write_text
from vq.checkpoint import load_checkpoint, save_checkpoint
from vq.config import dataclass_from_dict
from vq.train import RunClock, append_metrics, batch_indices, finish_run, learning_rate

from .baseline import DiffusionBaseline
from .config import BaselineConfig, RefinerConfig
from .refiner import Refiner, diffusion_target

CHECKPOINT_NAME = "checkpoint.safetensors"


@dataclass(frozen=True)
class DiffusionTrainConfig:
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 200
    max_steps: int = 4000
    caption_dropout: float = 0.1  # baseline only
    log_every: int = 20
    checkpoint_every: int = 100
    seed: int = 0
    num_train: int = 50000

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(self.betas))
        for name in ("batch_size", "max_steps", "log_every", "checkpoint_every", "num_train"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")

    def to_dict(self) -> dict:
        return asdict(self)


MODELS = {"refiner": (Refiner, RefinerConfig), "diffusion": (DiffusionBaseline, BaselineConfig)}


@dataclass(frozen=True)
class DiffusionPreset:
    kind: str
    model: dict = field(default_factory=dict)  # the model config's fields (the baseline's vocabulary comes later)
    train: DiffusionTrainConfig = field(default_factory=DiffusionTrainConfig)

    @classmethod
    def from_dict(cls, kind: str, d: dict) -> "DiffusionPreset":
        unknown = sorted(set(d) - {"model", "train"})
        if unknown:
            raise ValueError(f"unknown preset keys {unknown}; allowed: ['model', 'train']")
        MODELS[kind][1].from_dict(d.get("model", {}))  # validate now, not after data preparation
        return cls(kind, dict(d.get("model", {})), dataclass_from_dict(DiffusionTrainConfig, d.get("train", {})))

    @classmethod
    def from_name(cls, kind: str, name: str) -> "DiffusionPreset":
        if name.endswith(".json"):
            return cls.from_dict(kind, json.loads(Path(name).read_text()))
        folder = resources.files("configs") / kind
        names = sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))
        if name not in names:
            raise ValueError(f"{kind} preset must be one of {names}, got {name!r}")
        return cls.from_dict(kind, json.loads((folder / f"{name}.json").read_text()))


def train_diffusion(preset: DiffusionPreset, model_overrides: dict, images: torch.Tensor,
                    conditions: torch.Tensor, out_dir: str | Path, max_minutes: float | None = None,
                    resume: bool = False, stop_after: int | None = None, progress: bool = True) -> Path:
    """Train a refiner (``conditions``: uint8 VQ reconstructions (N, 3, S, S)) or a baseline (``conditions``:
    caption ids (N, L), kind "diffusion") on uint8 ``images`` (N, 3, S, S). Writes ``out_dir/model`` and returns
    its path."""
    cfg = preset.train
    model_cls, config_cls = MODELS[preset.kind]
    config = config_cls.from_dict({**preset.model, **model_overrides})
    if images.dtype != torch.uint8 or tuple(images.shape[1:]) != (3, config.image_size, config.image_size):
        raise ValueError(f"images must be uint8 (N, 3, {config.image_size}, {config.image_size}), got "
                         f"{images.dtype} {tuple(images.shape)}")
    if len(conditions) != len(images):
        raise ValueError(f"got {len(images)} images but {len(conditions)} conditions")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / CHECKPOINT_NAME
    if ckpt_path.exists() and not resume:
        raise ValueError(f"{ckpt_path} exists: pass resume=True (--resume) to continue it, or choose another --out")

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    set_seed(cfg.seed)
    model = model_cls(config)
    scheduler = model.scheduler()
    alphas = scheduler.alphas_cumprod
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    step = 0
    if resume and ckpt_path.exists():
        metadata = load_checkpoint(ckpt_path, model, optimizer)
        step = metadata["step"]
    model, optimizer = accelerator.prepare(model, optimizer)
    if accelerator.is_main_process:
        write_text(out_dir / "preset.json", json.dumps({"kind": preset.kind, "model": config.to_dict(),
                                                        "train": cfg.to_dict()}, indent=2))
    rank, world = accelerator.process_index, accelerator.num_processes
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the {world} processes")
    device = accelerator.device
    metrics_file = out_dir / "metrics.jsonl"
    clock = (RunClock.resumed(metadata, out_dir / "metrics.jsonl", cfg.batch_size) if step else RunClock())
    start, seen = time.monotonic(), 0
    bar = tqdm(total=cfg.max_steps, initial=step, desc=f"train {preset.kind}",
               disable=not progress or not accelerator.is_main_process)
    model.train()
    while step < cfg.max_steps:
        if max_minutes is not None and time.monotonic() - start > max_minutes * 60:
            break
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, cfg.lr, cfg.warmup_steps, cfg.max_steps)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        idx = batch_indices(cfg.seed, step, len(images), cfg.batch_size)
        t = torch.randint(0, len(alphas), (cfg.batch_size,), generator=gen)
        noise = torch.randn((cfg.batch_size, 3, config.image_size, config.image_size), generator=gen)
        drop = torch.rand(cfg.batch_size, generator=gen) < cfg.caption_dropout
        mine = slice(rank, None, world)
        idx, t, noise, drop = idx[mine], t[mine], noise[mine], drop[mine]
        clean = images[idx].float().div(127.5).sub(1)
        noisy = scheduler.add_noise(clean, noise, t)
        if preset.kind == "refiner":
            condition = conditions[idx].float().div(127.5).sub(1)
        else:
            condition = torch.where(drop[:, None], accelerator.unwrap_model(model).null_captions(len(idx)),
                                    conditions[idx].long())
        prediction = model(noisy.to(device), t.to(device), condition.to(device))
        loss = F.mse_loss(prediction, diffusion_target(scheduler, clean, noise, t).to(device))
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        seen += len(idx) * world
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            record = {"step": step, "loss": loss.item(), "images_per_s": seen / (time.monotonic() - start)}
            append_metrics(accelerator, metrics_file, record)
            bar.set_postfix(loss=f"{record['loss']:.4f}", img_s=f"{record['images_per_s']:.1f}")
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
