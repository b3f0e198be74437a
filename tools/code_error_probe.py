"""A probe for why words fail (docs/recipe.md, section 14): where, teacher-forced, does the decoder put too little
probability on a scene's true codes? Split by what each code's 4x4-pixel cell shows: a word's ink, a shape, or
only background.

    python -m tools.code_error_probe --checkpoint checkpoints/tiny --scenes 100 --category text --out runs/probe.json

For fresh scenes of one category (a seed namespace no training set uses), render, encode with the pipeline's VQ,
and score every code under the true caption, both plain and with classifier-free guidance at the checkpoint's
default scale (what sampling draws from, before top-k). Per region: how many codes, the mean probability of the
true code, how often it is the most likely one, and per scene the expected number of a region's codes that a
temperature-1 draw gets wrong (the sum of 1 - p). A word is legible only if nearly all of its codes are right.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ar_model.pipeline import TextToImage
from ar_model.pipeline_utils import pil_to_pixels
from tools.ar_eval import code_logits
from tools.shards import scene_seed
from tools.world import render_any_size, sample_scene
from tools.world.config import max_word_len_for
from tools.world.render import BACKGROUNDS, shape_box, shape_mask, word_box
from tools.world.scene import SamplingOptions, caption
from tools.world.vocab import CATEGORIES
from vq.pretrained import write_text

REGIONS = ("word", "shape", "near", "background")  # near: background next to ink (the encoder sees it)


def region_of_codes(scene, size: int, grid: int) -> np.ndarray:
    """(grid, grid) array of region indices into REGIONS: word if any of the cell's pixels is a word's ink, else
    shape if any is a shape's, else near if one of its 8 neighbours is either, else background. Below 48 px the
    masks are those of the 48 px render that ``render_any_size`` shrinks."""
    size = max(size, 48)
    word = np.zeros((size, size), bool)
    shape = np.zeros((size, size), bool)
    for s in scene.shapes:
        x0, y0, side = shape_box(s, size)
        shape[y0: y0 + side, x0: x0 + side] |= shape_mask(s.shape, side)
    for w in scene.words:
        x0, y0, mask = word_box(w, size)
        word[y0: y0 + mask.shape[0], x0: x0 + mask.shape[1]] |= mask
    cell = size // grid
    cells = lambda m: m.reshape(grid, cell, grid, cell).any(axis=(1, 3))  # noqa: E731
    out = np.full((grid, grid), REGIONS.index("background"))
    ink = np.pad(cells(shape | word), 1)
    near = np.zeros((grid, grid), bool)
    for dy in range(3):
        for dx in range(3):
            near |= ink[dy: dy + grid, dx: dx + grid]
    out[near] = REGIONS.index("near")
    out[cells(shape)] = REGIONS.index("shape")
    out[cells(word)] = REGIONS.index("word")
    return out


@torch.no_grad()
def true_code_probabilities(pipe: TextToImage, captions: list[str], codes: torch.Tensor,
                            guidance_scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """codes (N, image_tokens) -> (p_true, is_top1) plain and guided, each (N, image_tokens)."""
    logits_c = code_logits(pipe, captions, codes).float()
    logits_u = code_logits(pipe, None, codes).float()
    guided = logits_u + guidance_scale * (logits_c - logits_u)
    out = []
    for logits in (logits_c, guided):
        p = logits.softmax(-1).gather(-1, codes[..., None]).squeeze(-1)
        out += [p, logits.argmax(-1) == codes]
    return tuple(out)


def _plain_backgrounds(scenes: list, size: int) -> list[Image.Image]:
    return [Image.new("RGB", (size, size), tuple(BACKGROUNDS[s.background])) for s in scenes]


def _far_background_matches(codes: torch.Tensor, plain_codes: torch.Tensor, region: np.ndarray) -> tuple[int, int]:
    """(how many, of how many) far-background codes of one image equal the plain background's there."""
    far = torch.from_numpy(region.reshape(-1) == REGIONS.index("background"))
    return int((codes.cpu()[far] == plain_codes.cpu()[far]).sum()), int(far.sum())


@torch.no_grad()
def code_locality(vq, scenes: list, size: int, grid: int) -> float:
    """Of the background codes not next to any ink, the fraction equal to the code the same cell gets in an image
    of the plain background: 1 for a tokenizer whose codes see only their neighbourhood."""
    weights = next(vq.parameters())
    same, total = 0, 0
    for scene, plain in zip(scenes, _plain_backgrounds(scenes, size)):
        codes = vq.encode(pil_to_pixels([render_any_size(scene, size), plain], weights.device).to(weights.dtype))
        hits, n = _far_background_matches(codes[0].flatten(), codes[1].flatten(), region_of_codes(scene, size, grid))
        same, total = same + hits, total + n
    return same / max(1, total)


def probe(pipe: TextToImage, scenes: int, category: str, words: str, seed: int, batch_size: int = 16) -> dict:
    size, grid = pipe.vq.config.image_size, pipe.decoder.config.grid_size
    guidance = pipe.generation_defaults.get("guidance_scale") or 1.0
    options = SamplingOptions(words, max_word_len_for(size))
    sampled = [sample_scene(scene_seed(seed, f"probe-codes-{category}-{words}", i), category, options)
               for i in range(scenes)]
    acc = {name: {r: [] for r in REGIONS} for name in ("p_plain", "top1_plain", "p_guided", "top1_guided")}
    expected_wrong = {r: [] for r in REGIONS}  # per scene, guided, temperature 1
    far_same, far_total = 0, 0  # code locality, from the same encodings
    for start in tqdm(range(0, scenes, batch_size), desc="scenes"):
        chunk = sampled[start: start + batch_size]
        images = [render_any_size(s, size) for s in chunk] + _plain_backgrounds(chunk, size)
        all_codes = pipe.vq.encode(pil_to_pixels(images, pipe.device).to(pipe.dtype)).flatten(1)
        codes, plain_codes = all_codes[:len(chunk)], all_codes[len(chunk):]
        p_c, top_c, p_g, top_g = true_code_probabilities(
            pipe, [caption(s) for s in chunk], codes.to(pipe.device), guidance)
        for k, scene in enumerate(chunk):
            regions = region_of_codes(scene, size, grid)
            hits, n = _far_background_matches(codes[k], plain_codes[k], regions)
            far_same, far_total = far_same + hits, far_total + n
            region = torch.from_numpy(regions.reshape(-1))
            for r_index, r in enumerate(REGIONS):
                sel = region == r_index
                if not sel.any():
                    continue
                for name, values in (("p_plain", p_c), ("top1_plain", top_c), ("p_guided", p_g),
                                     ("top1_guided", top_g)):
                    acc[name][r].append(values[k][sel].float().cpu())
                expected_wrong[r].append(float((1 - p_g[k][sel]).sum()))
    report = {"scenes": scenes, "category": category, "words": words, "seed": seed, "guidance_scale": guidance,
              "far_background_codes_as_on_a_blank_image": round(far_same / max(1, far_total), 4),
              "regions": {}}
    for r in REGIONS:
        if not acc["p_plain"][r]:
            continue
        cat = {name: torch.cat(acc[name][r]) for name in acc}
        report["regions"][r] = {
            "codes": int(cat["p_plain"].numel()),
            "codes_per_scene": round(cat["p_plain"].numel() / len(expected_wrong[r]), 1),
            **{f"mean_{name}": round(float(v.float().mean()), 4) for name, v in cat.items()},
            "expected_wrong_codes_per_scene_guided": round(float(np.mean(expected_wrong[r])), 2),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("checkpoints/tiny"))
    parser.add_argument("--scenes", type=int, default=100)
    parser.add_argument("--category", choices=CATEGORIES, default="text")
    parser.add_argument("--words", choices=("train", "heldout"), default="train")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    pipe = TextToImage.from_pretrained(args.checkpoint, torch_dtype=torch.float32)
    report = probe(pipe, args.scenes, args.category, args.words, args.seed)
    report["checkpoint"] = str(args.checkpoint)
    write_text(args.out, json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
