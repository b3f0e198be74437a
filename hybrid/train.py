"""Train the refiner or the baseline with ``accelerate`` (one process here, DDP under ``accelerate launch``).

Both learn to denoise: a clean image (in [-1, 1]), a timestep and noise drawn from a generator seeded by
(seed, step), so the batch, the timesteps, the noise and the caption dropout at step ``t`` are pure functions of
(seed, t), and a resumed run repeats the losses of one that never stopped. The refiner's condition is the VQ
reconstruction of the image; the baseline's is the caption (dropped to the null caption with probability
``caption_dropout``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate.utils import set_seed

from vq.config import TrainConfig, preset_parts, read_preset
from vq.training import batch_indices, open_run, step_generator, train_loop

from .baseline import DiffusionBaseline
from .config import BaselineConfig, RefinerConfig
from .refiner import Refiner, diffusion_clean, diffusion_target, make_training_scheduler, residual_scale


@dataclass(frozen=True)
class DiffusionTrainConfig(TrainConfig):
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 200
    checkpoint_every: int = 100
    num_train: int = 50000
    caption_dropout: float = 0.1  # baseline only
    # Train on the first fraction of the noise schedule only: the refiner starts from a partly noised image
    # (refine_strength), so the high-noise steps a full-schedule model learns are never run.
    timestep_fraction: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.caption_dropout < 1:
            raise ValueError(f"caption_dropout must be in [0, 1), got {self.caption_dropout!r}")
        if not 0 < self.timestep_fraction <= 1:
            raise ValueError(f"timestep_fraction must be in (0, 1], got {self.timestep_fraction!r}")


MODELS = {"refiner": (Refiner, RefinerConfig), "diffusion": (DiffusionBaseline, BaselineConfig)}


@dataclass(frozen=True)
class DiffusionPreset:
    kind: str
    model: dict = field(default_factory=dict)  # the model config's fields (the baseline's vocabulary comes later)
    train: DiffusionTrainConfig = field(default_factory=DiffusionTrainConfig)

    @classmethod
    def from_dict(cls, kind: str, d: dict) -> "DiffusionPreset":
        model, train = preset_parts(d)
        MODELS[kind][1].from_dict(model)  # validate now, not after data preparation
        return cls(kind, model, DiffusionTrainConfig.from_dict(train))

    @classmethod
    def from_name(cls, kind: str, name: str) -> "DiffusionPreset":
        if name.endswith(".json"):
            return cls.from_dict(kind, json.loads(Path(name).read_text()))
        return cls.from_dict(kind, read_preset(kind, name, kind))


def train_diffusion(preset: DiffusionPreset, model_overrides: dict, images: torch.Tensor,
                    conditions: torch.Tensor, out_dir: str | Path, max_minutes: float | None = None,
                    resume: bool = False, stop_after: int | None = None, progress: bool = True) -> Path:
    """Train a refiner (``conditions``: uint8 VQ reconstructions (N, 3, S, S)) or a baseline (``conditions``:
    caption ids (N, L), kind "diffusion") on uint8 ``images`` (N, 3, S, S). Writes ``out_dir/model`` and returns
    its path."""
    cfg = preset.train
    model_cls, config_cls = MODELS[preset.kind]
    if preset.kind == "refiner":  # what it learns to remove is all it may be asked to remove
        model_overrides = {**model_overrides, "max_strength": cfg.timestep_fraction}
        # Measured on the data once; a resumed run keeps the scale its weights were trained with.
        if {**preset.model, **model_overrides}.get("target") == "residual":
            saved = Path(out_dir) / "preset.json"
            saved_scale = json.loads(saved.read_text())["model"].get("residual_scale") \
                if resume and saved.is_file() else None
            model_overrides["residual_scale"] = saved_scale or residual_scale(images, conditions)
    config = config_cls.from_dict({**preset.model, **model_overrides})
    if images.dtype != torch.uint8 or tuple(images.shape[1:]) != (3, config.image_size, config.image_size):
        raise ValueError(f"images must be uint8 (N, 3, {config.image_size}, {config.image_size}), got "
                         f"{images.dtype} {tuple(images.shape)}")
    if len(conditions) != len(images):
        raise ValueError(f"got {len(images)} images but {len(conditions)} conditions")
    accelerator, ckpt_path = open_run(out_dir, resume)
    set_seed(cfg.seed)
    model = model_cls(config)
    scheduler = make_training_scheduler(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    device, size, base = accelerator.device, config.image_size, model

    def compute_loss(model, step, rank, world):
        gen = step_generator(cfg.seed, step)
        idx = batch_indices(cfg.seed, step, len(images), cfg.batch_size)
        t = torch.randint(0, max(1, round(len(scheduler.alphas_cumprod) * cfg.timestep_fraction)),
                          (cfg.batch_size,), generator=gen)
        noise = torch.randn((cfg.batch_size, 3, size, size), generator=gen)
        drop = torch.rand(cfg.batch_size, generator=gen) < cfg.caption_dropout
        mine = slice(rank, None, world)
        idx, t, noise, drop = idx[mine], t[mine], noise[mine], drop[mine]
        if preset.kind == "refiner":
            condition = conditions[idx].float().div(127.5).sub(1)
            clean = diffusion_clean(config, images[idx], condition)
        else:
            clean = images[idx].float().div(127.5).sub(1)
            condition = torch.where(drop[:, None], base.null_captions(len(idx)), conditions[idx].long())
        noisy = scheduler.add_noise(clean, noise, t)
        prediction = model(noisy.to(device), t.to(device), condition.to(device))
        return F.mse_loss(prediction, diffusion_target(scheduler, clean, noise, t).to(device)), {}

    model_dir = ckpt_path.parent / "model"
    train_loop(accelerator, model, optimizer, cfg, ckpt_path, resume,
               {"kind": preset.kind, "model": config.to_dict(), "train": cfg.to_dict()}, compute_loss,
               lambda m: m.save_pretrained(model_dir), f"train {preset.kind}", max_minutes, stop_after, progress)
    return model_dir
