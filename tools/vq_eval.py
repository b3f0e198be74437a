"""Evaluate a VQ tokenizer on fresh scenes: PSNR, codebook usage and perplexity, and the judge on
reconstructions next to the judge on the originals, per category. Also draws an original | reconstruction grid."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ar_model.pipeline_utils import model_device, model_dtype, pil_to_pixels, pixels_to_uint8
from tools.codebook import code_histogram, codebook_stats
from tools.grid import image_grid
from tools.image_metrics import psnr, ssim
from tools.judge.verdict import score
from tools.shards import scene_seed
from tools.world import CATEGORIES, SamplingOptions, caption, render, sample_scene
from vq.model import VQModel


def _judge(pair: tuple[np.ndarray, str]) -> bool:
    return score(pair[0], pair[1]).passed


def evaluate_vq(model: VQModel, num: int, seed: int = 0, batch_size: int = 50, workers: int | None = None,
                max_word_len: int = 4, progress: bool = True) -> tuple[dict, Image.Image]:
    size = model.config.image_size
    opts = SamplingOptions(words="train", max_word_len=max_word_len)
    counts = torch.zeros(model.config.vocab_size, dtype=torch.long)
    psnrs, originals, recons, captions, categories = [], [], [], [], []
    for start in tqdm(range(0, num, batch_size), desc="encode/decode", disable=not progress):
        scenes = [sample_scene(scene_seed(seed, "eval-vq", i), "mixed", opts)
                  for i in range(start, min(start + batch_size, num))]
        x = pil_to_pixels([render(s, size) for s in scenes], model_device(model)).to(model_dtype(model))
        ids = model.encode(x)
        y = model.decode_ids(ids)
        counts += code_histogram(ids.cpu(), model.config.vocab_size)
        mse = ((y.float() - x.float()) ** 2).flatten(1).mean(1).clamp(min=1e-10)
        psnrs += (10 * torch.log10(1 / mse)).tolist()
        originals += list(pixels_to_uint8(x))
        recons += list(pixels_to_uint8(y))
        captions += [caption(s) for s in scenes]
        categories += [s.category for s in scenes]
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    with ProcessPoolExecutor(workers or os.cpu_count() or 1) as pool:
        judged = list(tqdm(pool.map(_judge, list(zip(originals + recons, captions + captions)), chunksize=16),
                           total=2 * num, desc="judging", disable=not progress))
    orig_pass, recon_pass = judged[:num], judged[num:]
    per_category = {}
    for cat in CATEGORIES:
        idx = [i for i, c in enumerate(categories) if c == cat]
        if not idx:
            continue
        o = sum(orig_pass[i] for i in idx) / len(idx)
        r = sum(recon_pass[i] for i in idx) / len(idx)
        per_category[cat] = {"n": len(idx), "originals": o, "reconstructions": r,
                             "ratio": r / o if o else None}
    report = {
        "num_images": num,
        "image_size": size,
        "grid": f"{model.config.grid_size}x{model.config.grid_size}",
        "tokens_per_image": model.config.grid_size ** 2,
        "psnr": float(np.mean(psnrs)),
        **{f"codebook_{k}": v for k, v in codebook_stats(counts).items()},
        "codebook_size": model.config.vocab_size,
        "judge": per_category,
        "min_ratio": min(v["ratio"] for v in per_category.values() if v["ratio"] is not None),
    }
    return report, reconstruction_grid(originals[:16], recons[:16])


@torch.no_grad()
def evaluate_vq_on_images(model: VQModel, images: torch.Tensor, batch_size: int = 50,
                          progress: bool = True) -> tuple[dict, Image.Image]:
    """For any data (no captions needed): PSNR and SSIM of the reconstructions, codebook usage and perplexity,
    and an original | reconstruction grid. images: uint8 (N, 3, S, S) at the tokenizer's size."""
    counts = torch.zeros(model.config.vocab_size, dtype=torch.long)
    originals, recons = [], []
    for start in tqdm(range(0, len(images), batch_size), desc="encode/decode", disable=not progress):
        x = images[start:start + batch_size].to(model_device(model)).to(model_dtype(model)).div(255)
        ids = model.encode(x)
        counts += code_histogram(ids.cpu(), model.config.vocab_size)
        originals += list(pixels_to_uint8(x))
        recons += list(pixels_to_uint8(model.decode_ids(ids)))
    report = {
        "num_images": len(images),
        "image_size": model.config.image_size,
        "grid": f"{model.config.grid_size}x{model.config.grid_size}",
        "psnr": float(np.mean([psnr(r, o) for o, r in zip(originals, recons)])),
        "ssim": float(np.mean([ssim(r, o) for o, r in zip(originals, recons)])),
        **{f"codebook_{k}": v for k, v in codebook_stats(counts).items()},
        "codebook_size": model.config.vocab_size,
    }
    return report, reconstruction_grid(originals[:16], recons[:16])


def reconstruction_grid(originals: list[np.ndarray], recons: list[np.ndarray], scale: int = 2) -> Image.Image:
    """Pairs side by side, original | reconstruction, four pairs a row."""
    size = originals[0].shape[0] * scale
    pairs = [image_grid([Image.fromarray(o), Image.fromarray(r)], 2, tile=size, gap=0)
             for o, r in zip(originals, recons)]
    return image_grid(pairs, 4, gap=8, margin=(0, 0, 8, 8))
