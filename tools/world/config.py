"""``WorldConfig``: what a preset fixes about the scene world (canvas size, longest word)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path

from .vocab import WORD_MAX_LEN, WORD_MIN_LEN

PRESETS = ("tiny", "small", "base")


@dataclass(frozen=True)
class WorldConfig:
    image_size: int = 64
    max_word_len: int = 4

    def __post_init__(self):
        if not isinstance(self.image_size, int) or self.image_size < 48:
            raise ValueError(f"image_size must be an integer >= 48, got {self.image_size!r}")
        if not isinstance(self.max_word_len, int) or not WORD_MIN_LEN <= self.max_word_len <= WORD_MAX_LEN:
            raise ValueError(f"max_word_len must be in [{WORD_MIN_LEN}, {WORD_MAX_LEN}], got {self.max_word_len!r}")

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
