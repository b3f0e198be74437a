"""Validate the judge before trusting its numbers: ground truth must pass, mismatched captions must fail.

For each category, ``num`` seeded scenes are judged three ways:
- ``ground_truth``: the render against its own caption (should pass);
- ``mismatched``: the same render against a caption of the same category changed in the one thing the
  category tests (colour, shape, position, count, order, word ...), so the image cannot satisfy it
  (should fail);
- ``blurred``: the render after a 2x down/up-sample (bilinear) against its own caption.
"""

from __future__ import annotations

import os
import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

from PIL import Image
from tqdm.auto import tqdm

from tools.world.caption import Requirements, TextReq, category_of, format_caption
from tools.world.render import render
from tools.world.scene import SamplingOptions, sample_scene
from tools.world.vocab import CATEGORIES, COLOURS, COUNT_WORDS, POSITIONS, SHAPES
from tools.world.words import word_list

from .verdict import score

_OPPOSITE = {
    "to the left of": "to the right of", "to the right of": "to the left of", "above": "below", "below": "above",
}


def _other(rng: random.Random, options, *exclude):
    return rng.choice([o for o in options if o not in exclude])


def mismatch(req: Requirements, rng: random.Random, words: tuple[str, ...]) -> Requirements:
    """A caption of the same category that the scene of ``req`` does not satisfy."""
    category = category_of(req)
    c = list(req.clauses)
    if category == "single_object":
        o = c[0]
        if rng.random() < 0.5:
            c[0] = replace(o, colour=_other(rng, COLOURS, o.colour))
        else:
            c[0] = replace(o, shape=_other(rng, SHAPES, o.shape))
    elif category == "position":
        c[0] = replace(c[0], position=_other(rng, POSITIONS, c[0].position))
    elif category == "two_objects":
        a, b = c
        # Keep what the two share (colour or shape) so the category stays two_objects; change the other.
        if a.colour == b.colour:
            c[1] = replace(b, shape=_other(rng, SHAPES, a.shape, b.shape))
        else:
            c[1] = replace(b, colour=_other(rng, COLOURS, a.colour, b.colour))
    elif category == "colour_attribution":
        a, b = c
        c = [replace(a, colour=b.colour), replace(b, colour=a.colour)]
    elif category == "relation":
        c[0] = replace(c[0], relation=_OPPOSITE[c[0].relation])
    elif category == "counting":
        c[0] = replace(c[0], count=_other(rng, COUNT_WORDS.values(), c[0].count))
    elif category == "text":
        c[0] = replace(c[0], word=_other(rng, words, c[0].word))
    elif category == "text_layout":
        k = next(i for i, x in enumerate(c) if isinstance(x, TextReq))
        t = c[k]
        what = rng.choice(("word", "colour", "position"))
        if what == "word":
            c[k] = replace(t, word=_other(rng, words, t.word))
        elif what == "colour":
            c[k] = replace(t, colour=_other(rng, COLOURS, t.colour))
        else:
            c[k] = replace(t, position=_other(rng, POSITIONS, t.position))
    else:
        raise ValueError(f"no mismatch rule for category {category!r}")
    out = Requirements(tuple(c), req.background)
    assert category_of(out) == category and out != req, (format_caption(req), format_caption(out))
    return out


def blur2x(image: Image.Image) -> Image.Image:
    s = image.width
    return image.resize((s // 2, s // 2), Image.BILINEAR).resize((s, s), Image.BILINEAR)


def _judge_one(args: tuple[str, int, int, int]) -> tuple[str, bool, bool, bool]:
    category, seed, size, max_word_len = args
    opts = SamplingOptions(words="train", max_word_len=max_word_len)
    scene = sample_scene(seed, category, opts)
    image = render(scene, size)
    wrong = format_caption(mismatch(scene.requirements, random.Random(seed), word_list("train", max_word_len)))
    own = format_caption(scene.requirements)
    return category, score(image, own).passed, score(image, wrong).passed, score(blur2x(image), own).passed


def validate(num: int, size: int, max_word_len: int, seed: int = 0, workers: int | None = None,
             progress: bool = True) -> dict:
    """Pass rates per category on ground truth, mismatched captions and blurred renders."""
    jobs = [(cat, seed * 1_000_003 + i * len(CATEGORIES) + k, size, max_word_len)
            for k, cat in enumerate(CATEGORIES) for i in range(num)]
    workers = workers or os.cpu_count() or 1
    # Tesseract would start a thread per core in every worker; one each keeps the cores for the workers.
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    with ProcessPoolExecutor(workers) as pool:
        results = list(tqdm(pool.map(_judge_one, jobs, chunksize=8), total=len(jobs), disable=not progress,
                            desc=f"validating judge at {size}px"))
    report = {"size": size, "num_per_category": num, "categories": {}}
    for cat in CATEGORIES:
        rows = [r for r in results if r[0] == cat]
        report["categories"][cat] = {
            "ground_truth": sum(r[1] for r in rows) / len(rows),
            "mismatched": sum(r[2] for r in rows) / len(rows),
            "blurred": sum(r[3] for r in rows) / len(rows),
        }
    for key in ("ground_truth", "mismatched", "blurred"):
        report[f"min_{key}"] = min(v[key] for v in report["categories"].values())
        report[f"max_{key}"] = max(v[key] for v in report["categories"].values())
    return report
