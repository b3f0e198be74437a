"""Train the refiner or the baseline with ``accelerate`` (one process here, DDP under ``accelerate launch``).

Both learn to denoise: a clean image (in [-1, 1]), a timestep and noise drawn from a generator seeded by
(seed, step), so the batch, the timesteps, the noise and the caption dropout at step ``t`` are pure functions of
(seed, t), and a resumed run repeats the losses of one that never stopped. The refiner's condition is the VQ
reconstruction of the image; the baseline's is the caption (dropped to the null caption with probability
``caption_dropout``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ar_model.sequence import pad_captions
from ar_model.text_tokenizer import CaptionTokenizer
from hybrid.baseline import DiffusionBaseline
from hybrid.refiner import Refiner, diffusion_clean, residual_scale
from hybrid.schedulers import diffusion_target, make_training_scheduler
from vq.model import VQModel
from vq.pretrained import atomic_path

from .captions import add_skips, encode_captions
from .config import DiffusionPreset
from .init import load_init_weights, model_folder, prior_training
from .loop import RunOptions, TrainTask, batch_indices, open_run, step_generator, train_loop

MODELS = {"refiner": Refiner, "diffusion": DiffusionBaseline}
COMPONENTS = {"refiner": "refiner", "diffusion": "baseline"}  # their folders (and training.json keys) in a release


CONDITIONS_NAME = "conditions.safetensors"


@torch.no_grad()
def refiner_conditions(vq: VQModel, images: torch.Tensor, out_dir: str | Path, progress: bool = True) -> torch.Tensor:
    """The VQ reconstructions (uint8 (N, 3, S, S)) the refiner learns to improve; made once per run folder and
    kept in ``out_dir/conditions.safetensors``."""
    cache = Path(out_dir) / CONDITIONS_NAME
    if cache.exists():
        conditions = load_file(str(cache))["conditions"]
        if len(conditions) == len(images):
            return conditions
    parts = []
    for start in tqdm(range(0, len(images), 256), desc="VQ reconstructions", disable=not progress):
        x = images[start:start + 256].float() / 255
        parts.append((vq.decode_ids(vq.encode(x)) * 255).round().to(torch.uint8))
    conditions = torch.cat(parts).contiguous()  # the VQ decoder may hand back channels-last tensors
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as tmp:
        save_file({"conditions": conditions}, str(tmp))
    return conditions


class Reconstructions:
    """The refiner's conditions for pre-extracted codes (``tools.codes``): each batch's VQ reconstructions decoded
    from its codes when it is read, the same uint8 images ``refiner_conditions`` makes from the pixels, without
    holding them all. ``codes``: rows of (h * w) ids, indexed like the images."""

    def __init__(self, vq: VQModel, codes):
        self.vq, self.codes, self.grid = vq, codes, vq.config.grid_size

    def __len__(self) -> int:
        return len(self.codes)

    @torch.no_grad()
    def __getitem__(self, idx) -> torch.Tensor:
        ids = self.codes[idx].long().view(-1, self.grid, self.grid)
        return (self.vq.decode_ids(ids) * 255).round().to(torch.uint8)


def baseline_conditions(tokenizer: CaptionTokenizer, captions: list[str], max_tokens: int, out_dir: str | Path,
                        keys: list[str] | None = None, strict: bool = False) -> tuple[torch.Tensor, list[int]]:
    """The baseline's captions as padded token ids (N_kept, max_tokens) and the rows kept: a caption over the
    token limit is skipped and added to ``out_dir/data.json`` (``strict``: an error). The tokenizer is saved
    beside the run so its pipeline can be assembled from the folder."""
    pieces, kept, skipped = encode_captions(tokenizer, captions, keys, strict)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    add_skips(Path(out_dir) / "data.json", skipped)
    tokenizer.save_pretrained(Path(out_dir) / "caption_tokenizer")
    return pad_captions(pieces, max_tokens, tokenizer.vocab_size), kept


def train_diffusion(preset: DiffusionPreset, images: torch.Tensor, conditions: torch.Tensor, out_dir: str | Path,
                    max_minutes: float | None = None, resume: bool = False, stop_after: int | None = None,
                    progress: bool = True, init_from: str | Path | None = None) -> Path:
    """Train a refiner (``conditions``: uint8 VQ reconstructions (N, 3, S, S)) or a baseline (``conditions``:
    caption ids (N, L), kind "diffusion", its preset's ``text_vocab_size`` that of their tokenizer) on uint8
    ``images`` (N, 3, S, S). Both may be read from disk a batch at a time: anything with ``len``, ``shape``,
    ``dtype`` and ``[idx]`` (``tools.codes.RowStore``, ``Reconstructions``). Writes ``out_dir/model`` and returns its path. ``init_from`` (a model folder, or a
    pipeline/release folder holding one) warm-starts from its weights (``tools.train.init``)."""
    cfg = preset.train
    model_cls = MODELS[preset.kind]
    init, init_record = None, None
    if init_from is not None:
        init = model_cls.from_pretrained(model_folder(Path(init_from), COMPONENTS[preset.kind]), dtype=torch.float32)
        init_record = prior_training(Path(init_from), COMPONENTS[preset.kind])
    if preset.kind == "refiner":  # what it learns to remove is all it may be asked to remove
        preset = preset.with_model(max_strength=cfg.timestep_fraction)
        if init is not None and preset.model.target == "residual":  # the scale its weights were trained with
            preset = preset.with_model(residual_scale=init.config.residual_scale)
        # Measured on the data once; a resumed run keeps the scale its weights were trained with.
        elif preset.model.target == "residual":
            saved = Path(out_dir) / "preset.json"
            saved_scale = json.loads(saved.read_text())["model"].get("residual_scale") \
                if resume and saved.is_file() else None
            preset = preset.with_model(residual_scale=saved_scale or residual_scale(images, conditions))
    config = preset.model
    if images.dtype != torch.uint8 or tuple(images.shape[1:]) != (3, config.image_size, config.image_size):
        raise ValueError(f"images must be uint8 (N, 3, {config.image_size}, {config.image_size}), got "
                         f"{images.dtype} {tuple(images.shape)}")
    if len(conditions) != len(images):
        raise ValueError(f"got {len(images)} images but {len(conditions)} conditions")
    run = open_run(out_dir, RunOptions(max_minutes, resume, stop_after, progress))
    set_seed(cfg.seed)
    model = model_cls(config)
    if init is not None:  # a resumed run then loads its checkpoint over these
        load_init_weights(model, init, COMPONENTS[preset.kind])
    scheduler = make_training_scheduler(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    device, size, base = run.accelerator.device, config.image_size, model

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

    model_dir = run.out_dir / "model"
    train_loop(run, model, optimizer, cfg, TrainTask(
        f"train {preset.kind}", {"kind": preset.kind, "model": config.to_dict(), "train": cfg.to_dict()},
        compute_loss, lambda m: m.save_pretrained(model_dir), init=init_record))
    return model_dir
