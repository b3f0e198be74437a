"""The typed config of the VQ tokenizer (``VQConfig``); its training run's is in ``tools.train.config``.

Every quantizer argument is written here, not left to vector-quantize-pytorch's defaults, because those change
between releases (``rotation_trick`` came in defaulting to True in 2024, and its default is derived from other
flags since 2025). A checkpoint therefore means the same model under any supported library version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .pretrained import JSONConfig, require_positive_ints

QUANTIZERS = ("vq", "fsq")
NORMS = ("group", "channel")


@dataclass(frozen=True)
class VQConfig(JSONConfig):
    image_size: int = 64
    channels: int = 3
    base_channels: int = 64
    # One entry per resolution; len - 1 stride-2 stages, so the downsampling factor is 2 ** (len - 1).
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    latent_dim: int = 64  # encoder output width fed to the quantizer
    # group: GroupNorm (VQGAN, LlamaGen); its statistics span the image, so on small images every code depends on
    # what is drawn anywhere (docs/recipe.md, section 14). channel: per-pixel LayerNorm, codes stay local.
    norm: str = "group"
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
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {list(NORMS)}, got {self.norm!r}")
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
