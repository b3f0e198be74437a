"""Evaluate the refiner on fresh scenes, where the clean render is known: for each (steps, strength) setting,
PSNR of the refined VQ reconstruction to the clean render, its gradient energy (sharpness) and seconds per
image, next to the same figures for the unrefined VQ reconstruction. This is how the hybrid defaults are chosen.
Also draws a clean | VQ | refined grid for the best setting."""

from __future__ import annotations

import time

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ar_model.pipeline_utils import model_device, model_dtype, pil_to_pixels, pixels_to_uint8
from hybrid.pipeline import RefinerPipeline
from hybrid.refiner import Refiner
from tools.grid import image_grid
from tools.image_metrics import gradient_energy, psnr
from tools.shards import scene_seed
from tools.world import SamplingOptions, max_word_len_for, render_any_size, sample_scene
from vq.model import VQModel


def _summary(images: list[np.ndarray], clean: list[np.ndarray]) -> dict:
    return {"psnr": round(float(np.mean([psnr(a, b) for a, b in zip(images, clean)])), 3),
            "gradient_energy": round(float(np.mean([gradient_energy(a) for a in images])), 5)}


def evaluate_refiner(vq: VQModel, refiner: Refiner, num: int, settings: list[tuple[int, float]], seed: int = 0,
                     batch_size: int = 50, progress: bool = True) -> tuple[dict, Image.Image]:
    size = vq.config.image_size
    # words short enough to be legible at this size, as in `t2i eval vq`
    opts = SamplingOptions(words="train", max_word_len=max_word_len_for(size))
    clean, recon = [], []
    for start in range(0, num, batch_size):
        scenes = [sample_scene(scene_seed(seed, "eval-refiner", i), "mixed", opts)
                  for i in range(start, min(start + batch_size, num))]
        x = pil_to_pixels([render_any_size(s, size) for s in scenes], model_device(vq)).to(model_dtype(vq))
        with torch.no_grad():
            recon += list(pixels_to_uint8(vq.decode_ids(vq.encode(x))))
        clean += list(pixels_to_uint8(x))
    # The refiner sees what the hybrid pipeline gives it: 8-bit images.
    recon_t = pil_to_pixels(recon, model_device(refiner))
    report = {"num_images": num, "image_size": size,
              "clean": {"gradient_energy": round(float(np.mean([gradient_energy(a) for a in clean])), 5)},
              "vq": _summary(recon, clean), "settings": []}
    best, best_images = None, None
    pipe = RefinerPipeline(refiner)
    pipe.set_progress_bar_config(disable=True)  # one bar, over the settings
    for steps, strength in tqdm(settings, desc="refiner settings", disable=not progress):
        refined, seconds = [], 0.0
        for start in range(0, num, batch_size):
            batch = recon_t[start:start + batch_size]
            gens = [torch.Generator().manual_seed(seed * 1_000_003 + i) for i in range(start, start + len(batch))]
            t0 = time.perf_counter()
            refined += list(pixels_to_uint8(pipe(batch, steps, strength, gens)))
            seconds += time.perf_counter() - t0
        row = {"steps": steps, "strength": strength, **_summary(refined, clean),
               "seconds_per_image": round(seconds / num, 5)}
        report["settings"].append(row)
        if best is None or row["psnr"] > best["psnr"]:
            best, best_images = row, refined
    report["best_psnr"] = best
    return report, _grid(clean[:8], recon[:8], best_images[:8])


def _grid(*columns: list[np.ndarray], scale: int = 2) -> Image.Image:
    """Rows of clean | VQ | refined, each image scaled up ``scale`` times (nearest)."""
    rows = [Image.fromarray(image) for row in zip(*columns) for image in row]
    return image_grid(rows, len(columns), tile=columns[0][0].shape[0] * scale, gap=4, margin=(0, 0, 4, 4))
