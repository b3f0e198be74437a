"""Paired comparison of two ``t2i score`` reports on the same prompts: is B better than A, beyond the noise?

Two checkpoints judged on the same prompts share each prompt's difficulty, so the difference of their pass rates
is far less noisy than either rate alone. The interval is a paired bootstrap: prompts are resampled within each
category (the categories' sizes are fixed by the prompt file), both reports keep the drawn prompts, and the
difference is taken on every draw. The prompt is the unit: the images of one prompt (seeds) move together.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np


def _by_prompt(report: dict, name: str) -> list[tuple[str, str, list[bool]]]:
    """(prompt, category, [passed per image]) for each prompt of a report, in prompt order."""
    images = report.get("images")
    if not images:
        raise ValueError(f"{name} has no per-image verdicts ('images'); score it again with this version of t2i score")
    per_prompt = len(images) // report["num_prompts"]
    rows = []
    for start in range(0, len(images), per_prompt):
        group = images[start:start + per_prompt]
        rows.append((group[0]["prompt"], group[0]["category"], [bool(g["passed"]) for g in group]))
    return rows


def paired_difference(base: dict, new: dict, samples: int = 10_000, seed: int = 0) -> dict:
    """Per category and overall (the mean over categories, as ``summarize`` defines it): A's and B's pass rates,
    B - A, and its 95% paired-bootstrap interval. Raises ValueError if the reports were not made on the same
    prompts in the same order."""
    a_rows, b_rows = _by_prompt(base, "the first report"), _by_prompt(new, "the second report")
    a_prompts, b_prompts = [r[0] for r in a_rows], [r[0] for r in b_rows]
    if a_prompts != b_prompts:
        first = next((i for i, (x, y) in enumerate(zip(a_prompts, b_prompts)) if x != y),
                     min(len(a_prompts), len(b_prompts)))
        raise ValueError(f"the reports were not made on the same prompts ({len(a_prompts)} and {len(b_prompts)} "
                         f"prompts; they first differ at prompt {first + 1})")
    by_category: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for (_, category, a), (_, _, b) in zip(a_rows, b_rows):
        by_category[category].append((float(np.mean(a)), float(np.mean(b))))
    rng = np.random.default_rng(seed)
    categories, draws = {}, []
    for category, pairs in by_category.items():
        rates = np.asarray(pairs)  # (prompts, 2)
        diff = rates[:, 1] - rates[:, 0]
        picks = rng.integers(0, len(diff), size=(samples, len(diff)))
        boot = diff[picks].mean(axis=1)
        draws.append(boot)
        categories[category] = _row(rates[:, 0].mean(), rates[:, 1].mean(), boot, len(diff))
    overall = np.mean(draws, axis=0)
    a_overall = float(np.mean([c["a"] for c in categories.values()]))
    b_overall = float(np.mean([c["b"] for c in categories.values()]))
    return {"num_prompts": len(a_rows), "samples": samples, "seed": seed,
            "overall": _row(a_overall, b_overall, overall, len(a_rows)), "categories": categories}


def _row(a: float, b: float, boot: np.ndarray, n: int) -> dict:
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"n_prompts": n, "a": round(float(a), 4), "b": round(float(b), 4), "b_minus_a": round(float(b - a), 4),
            "ci95": [round(float(lo), 4), round(float(hi), 4)]}
