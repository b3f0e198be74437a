"""Aggregate verdicts into the judge's report, and draw the failures as a PNG grid."""

from __future__ import annotations

import math
import textwrap
from collections import defaultdict

from PIL import Image, ImageDraw, ImageFont

from tools.grid import image_grid
from tools.world.vocab import CATEGORIES

from .verdict import Verdict, edit_distance


def wilson_interval(passed: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a pass rate (sound for small n and rates near 0 or 1)."""
    if n == 0:
        return 0.0, 0.0
    p = passed / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _rate(results: list[bool], images_per_prompt: int) -> dict:
    """Pass rate of ``results`` with its 95% CI, the prompt being the unit: images of one prompt (seeds) are not
    independent draws (a greedy mode's are copies), so the interval is as wide as for one image per prompt."""
    n_prompts = len(results) // images_per_prompt
    rate = sum(results) / len(results)
    lo, hi = wilson_interval(rate * n_prompts, n_prompts)
    return {"n": len(results), "n_prompts": n_prompts, "passed": sum(results), "pass_rate": rate,
            "ci95": [round(lo, 4), round(hi, 4)]}


def summarize(verdicts: list[Verdict], num_prompts: int, images_per_prompt: int = 1) -> dict:
    """Per-category and pooled pass rate with 95% CI and n; overall = mean over the categories present; text
    metrics. ``images_per_prompt``: how many images (seeds) each prompt has; the CIs count prompts."""
    if images_per_prompt < 1 or len(verdicts) % images_per_prompt:
        raise ValueError(f"{len(verdicts)} verdicts do not divide into {images_per_prompt} images per prompt")
    by_category: dict[str, list[bool]] = defaultdict(list)
    for v in verdicts:
        by_category[v.category].append(v.passed)
    order = [c for c in CATEGORIES if c in by_category] + sorted(set(by_category) - set(CATEGORIES))
    categories = {c: _rate(by_category[c], images_per_prompt) for c in order}
    reads = [r for v in verdicts for r in v.text_reads]
    text = None
    if reads:
        text = {
            "n_words": len(reads),
            "word_accuracy": sum(r.read == r.expected for r in reads) / len(reads),
            "cer": sum(edit_distance(r.read, r.expected) / len(r.expected) for r in reads) / len(reads),
            "normalized_edit_distance": sum(
                edit_distance(r.read, r.expected) / max(len(r.read), len(r.expected)) for r in reads
            ) / len(reads),
        }
    return {
        "num_prompts": num_prompts,
        "num_images": len(verdicts),
        "overall": sum(c["pass_rate"] for c in categories.values()) / len(categories) if categories else 0.0,
        "pooled": _rate([v.passed for v in verdicts], images_per_prompt) if verdicts else None,
        "categories": categories,
        "text": text,
    }


def failure_grid(images: list[Image.Image], verdicts: list[Verdict], tile: int = 160, columns: int = 4,
                 limit: int = 32) -> Image.Image | None:
    """A grid of failed images, each over its caption and the first reason it failed; None if none failed."""
    failed = [(im, v) for im, v in zip(images, verdicts) if not v.passed][:limit]
    if not failed:
        return None
    font = ImageFont.load_default(size=11)
    inner = tile - 8  # each image framed, 4 px from its cell's edges

    def caption(draw: ImageDraw.ImageDraw, index: int, at: tuple[int, int]) -> None:
        (x, y), v = at, failed[index][1]
        draw.rectangle((x - 1, y - 1, x + inner, y + inner), outline="gray")
        lines = textwrap.wrap(v.caption, 28)[:2] + textwrap.wrap("x " + v.reasons[0], 28)[:5]
        draw.multiline_text((x, y + inner + 4), "\n".join(lines), fill="black", font=font, spacing=1)

    return image_grid([im.convert("RGB") for im, _ in failed], columns, tile=inner, gap=8, margin=(4, 4, 4, 4),
                      below=96, background="white", after_tile=caption)
