"""Typed configs of the VQ tokenizer: the model (``VQConfig``) and its training run (``VQTrainConfig``).

Every quantizer argument is written here, not left to vector-quantize-pytorch's defaults, because those change
between releases (``rotation_trick`` came in defaulting to True in 2024, and its default is derived from other
flags since 2025). A checkpoint therefore means the same model under any supported library version.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path

QUANTIZERS = ("vq", "fsq")


def require_positive_ints(config, names: tuple[str, ...]) -> None:
    """Raise a ValueError naming the first of ``names`` that is not a positive integer on ``config``."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def dataclass_from_dict(cls, d: dict):
    """``cls(**d)``, but an unknown key is an error that names it and the allowed keys."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; allowed: {sorted(known)}")
    return cls(**d)


def read_preset(folder: str, name: str, what: str) -> dict:
    """The JSON of preset ``name`` in ``configs/<folder>/``; an unknown name is an error listing the known ones."""
    root = resources.files("configs") / folder
    names = sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".json"))
    if name not in names:
        raise ValueError(f"{what} preset must be one of {names}, got {name!r}")
    return json.loads((root / f"{name}.json").read_text())


def preset_parts(d: dict) -> tuple[dict, dict]:
    """A preset's JSON -> its ``model`` and ``train`` dicts; any other key is an error."""
    unknown = sorted(set(d) - {"model", "train"})
    if unknown:
        raise ValueError(f"unknown preset keys {unknown}; allowed: ['model', 'train']")
    return dict(d.get("model", {})), dict(d.get("train", {}))


class JSONConfig:
    """``to_dict`` / ``from_dict`` for the frozen dataclass configs that are saved as JSON."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        return dataclass_from_dict(cls, d)


@dataclass(frozen=True)
class TrainConfig(JSONConfig):
    """What every trainer reads (the shared loop in ``vq.training``); each model's config adds its own fields
    and defaults."""

    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 100
    max_steps: int = 4000
    log_every: int = 20
    checkpoint_every: int = 200
    seed: int = 0
    num_train: int = 20000  # scenes to read from the shards (all of them if fewer)

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(self.betas))
        require_positive_ints(self, ("batch_size", "max_steps", "log_every", "checkpoint_every", "num_train"))
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")


@dataclass(frozen=True)
class VQConfig(JSONConfig):
    image_size: int = 64
    channels: int = 3
    base_channels: int = 64
    # One entry per resolution; len - 1 stride-2 stages, so the downsampling factor is 2 ** (len - 1).
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    latent_dim: int = 64  # encoder output width fed to the quantizer
    quantizer: str = "vq"
    # vector quantizer (LlamaGen recipe: low-dimensional, l2-normalised codes)
    codebook_size: int = 1024
    codebook_dim: int = 8
    use_cosine_sim: bool = True  # l2-normalised codes and inputs
    kmeans_init: bool = True
    kmeans_iters: int = 10
    decay: float = 0.99  # EMA of the codebook
    threshold_ema_dead_code: float = 2.0  # a code used less than this (EMA count) is replaced by a batch vector
    commitment_weight: float = 0.25
    rotation_trick: bool = True
    # finite scalar quantizer (codebook size = product of levels)
    fsq_levels: tuple[int, ...] = (8, 5, 5, 5)

    def __post_init__(self):
        object.__setattr__(self, "channel_mult", tuple(self.channel_mult))
        object.__setattr__(self, "fsq_levels", tuple(self.fsq_levels))
        if self.quantizer not in QUANTIZERS:
            raise ValueError(f"quantizer must be one of {list(QUANTIZERS)}, got {self.quantizer!r}")
        if self.downsample_factor not in (4, 8, 16):
            raise ValueError(
                f"channel_mult must have 3, 4 or 5 entries (downsampling 4, 8 or 16), got {self.channel_mult!r}"
            )
        if self.image_size % self.downsample_factor:
            raise ValueError(
                f"image_size must be a multiple of the downsampling factor {self.downsample_factor}, "
                f"got {self.image_size!r}"
            )
        require_positive_ints(self, ("image_size", "channels", "base_channels", "num_res_blocks", "latent_dim",
                                     "codebook_size", "codebook_dim", "kmeans_iters"))
        if not 0 < self.decay < 1:
            raise ValueError(f"decay must be in (0, 1), got {self.decay!r}")

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)

    @property
    def grid_size(self) -> int:
        """Tokens per side: an image is ``grid_size x grid_size`` ids."""
        return self.image_size // self.downsample_factor

    @property
    def vocab_size(self) -> int:
        return self.codebook_size if self.quantizer == "vq" else math.prod(self.fsq_levels)


@dataclass(frozen=True)
class VQTrainConfig(TrainConfig):
    lr: float = 2e-3
    l1_weight: float = 1.0
    l2_weight: float = 1.0


@dataclass(frozen=True)
class VQPreset:
    model: VQConfig = field(default_factory=VQConfig)
    train: VQTrainConfig = field(default_factory=VQTrainConfig)

    @classmethod
    def from_dict(cls, d: dict) -> "VQPreset":
        model, train = preset_parts(d)
        return cls(VQConfig.from_dict(model), VQTrainConfig.from_dict(train))

    @classmethod
    def from_json(cls, path: str | Path) -> "VQPreset":
        return cls.from_dict(json.loads(Path(path).read_text()))

    @classmethod
    def from_name(cls, name: str) -> "VQPreset":
        return cls.from_dict(read_preset("vq", name, "VQ"))
