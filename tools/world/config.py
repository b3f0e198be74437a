"""``WorldConfig``: what a preset fixes about the scene world (canvas size, longest word)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path

from vq.pretrained import check_int

from .vocab import WORD_MAX_LEN, WORD_MIN_LEN

PRESETS = ("tiny", "small", "base")


def max_word_len_for(image_size: int) -> int:
    """The longest word the presets draw at this canvas size (tiny, 64 px: 4 letters; small and base: 6), which
    evaluations at that size keep to so that their words stay legible."""
    return 4 if image_size < 128 else 6


@dataclass(frozen=True)
class WorldConfig:
    image_size: int = 64
    max_word_len: int = 4

    def __post_init__(self):
        check_int("image_size", self.image_size, 48)
        check_int("max_word_len", self.max_word_len, WORD_MIN_LEN, WORD_MAX_LEN,
                  allowed=f"in [{WORD_MIN_LEN}, {WORD_MAX_LEN}]")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "WorldConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown WorldConfig keys {unknown}; allowed: {sorted(known)}")
        return cls(**d)

    @classmethod
    def from_json(cls, path: str | Path) -> "WorldConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))

    @classmethod
    def from_preset(cls, name: str) -> "WorldConfig":
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {list(PRESETS)}, got {name!r}")
        return cls.from_dict(json.loads((resources.files("configs") / "world" / f"{name}.json").read_text()))
