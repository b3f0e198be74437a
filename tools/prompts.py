"""Evaluation prompts per category (docs/world.md), drawn from seeds apart from the training data's."""

from __future__ import annotations

from tools.shards import scene_seed
from tools.world import CATEGORIES, SamplingOptions, caption, sample_scene
from tools.world.config import WorldConfig


def make_prompts(category: str, num: int, seed: int = 0, words: str = "train",
                 world: WorldConfig = WorldConfig()) -> list[str]:
    """``num`` prompts of ``category``, or ``num`` of each category (in CATEGORIES order) for "all"."""
    if category != "all" and category not in CATEGORIES:
        raise ValueError(f"category must be 'all' or one of {list(CATEGORIES)}, got {category!r}")
    if not isinstance(num, int) or num < 1:
        raise ValueError(f"num must be a positive integer, got {num!r}")
    opts = SamplingOptions(words=words, max_word_len=world.max_word_len)
    categories = CATEGORIES if category == "all" else (category,)
    # A namespace of its own ("prompts-...") keeps these seeds apart from the training scenes' seeds.
    return [
        caption(sample_scene(scene_seed(seed, f"prompts-{cat}", i), cat, opts))
        for cat in categories for i in range(num)
    ]
