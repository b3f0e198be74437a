"""Train the tokenizer (``t2i train vq``) with the shared loop of ``tools.train.loop``.

The loss is L1 + L2 reconstruction plus the quantizer's commitment term. The codebook itself follows an
exponential moving average of the encoder outputs assigned to it (with k-means initialisation and dead-code
replacement), so it needs no gradient loss of its own; FSQ has no codebook to learn.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate.utils import set_seed

from tools.codebook import code_histogram, codebook_stats
from vq.model import VQModel

from .config import VQPreset
from .loop import RunOptions, TrainTask, batch_indices, open_run, train_loop


def vq_loss(recon: torch.Tensor, target: torch.Tensor, commit: torch.Tensor, l1_weight: float = 1.0,
            l2_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    l1 = F.l1_loss(recon, target)
    l2 = F.mse_loss(recon, target)
    total = l1_weight * l1 + l2_weight * l2 + commit
    return total, {"l1": l1.item(), "l2": l2.item(), "commit": commit.item()}


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
    run = open_run(out_dir, RunOptions(max_minutes, resume, stop_after, progress))
    set_seed(cfg.seed)  # model initialisation; the data order has its own generator
    model = VQModel(model_cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    counts = torch.zeros(model_cfg.vocab_size, dtype=torch.long)  # code usage since the last log

    def compute_loss(model, step, rank, world):
        idx = batch_indices(cfg.seed, step, len(images), cfg.batch_size)[rank::world]
        x = images[idx].to(run.accelerator.device).float().div(255)
        out = model(x)
        counts.add_(code_histogram(out.ids.detach().cpu(), model_cfg.vocab_size))
        return vq_loss(out.images, x, out.commit_loss, cfg.l1_weight, cfg.l2_weight)

    def usage() -> dict:
        stats = codebook_stats(counts)
        counts.zero_()
        return {"usage": stats["usage"]}

    model_dir = run.out_dir / "model"
    train_loop(run, model, optimizer, cfg, TrainTask("train vq", {"model": model_cfg.to_dict(), "train": asdict(cfg)},
                                                     compute_loss, lambda m: m.save_pretrained(model_dir), usage))
    return model_dir
