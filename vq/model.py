"""``VQModel``: images <-> token ids. Images are float (B, 3, S, S) in [0, 1]; ids are int64 (B, h, w)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config import VQConfig
from .decoder import Decoder
from .encoder import Encoder
from .pretrained import PretrainedMixin
from .quantizer import Quantizer


@dataclass
class VQOutput:
    images: torch.Tensor  # (B, 3, S, S) reconstructions, in [0, 1] up to the decoder's overshoot
    ids: torch.Tensor  # (B, h, w) int64
    quantized: torch.Tensor  # (B, D, h, w)
    commit_loss: torch.Tensor  # scalar


class VQModel(nn.Module, PretrainedMixin):
    config_class = VQConfig
    # The codebook is crowded (512 unit vectors in 8 dimensions: in the tiny release 40% have a neighbour within
    # cosine 0.999), so float16 rounding moved 40% of encoded ids to a near twin the decoder was not trained on.
    # It is 16 KB, so it stays float32 (docs/recipe.md section 17). So does the encoder (0.4 MB), for the same
    # reason: its float16 rounding still moved about 1 id in 250 to a twin, which cost the teacher-forced figures
    # of the tiny release ~10 nats per moved code (recipe section 19). Only the decoder's pixels can take float16.
    keep_in_fp32_modules = ("encoder", "quantizer")

    def __init__(self, config: VQConfig):
        super().__init__()
        self.config = config
        args = (config.channels, config.base_channels, config.channel_mult, config.num_res_blocks, config.latent_dim,
                config.norm)
        self.encoder = Encoder(*args)
        self.quantizer = Quantizer(config)
        self.decoder = Decoder(*args)

    def check_images(self, images: torch.Tensor) -> None:
        c, s = self.config.channels, self.config.image_size
        if not isinstance(images, torch.Tensor):
            raise ValueError(f"images must be a torch.Tensor of shape (B, {c}, {s}, {s}), got {type(images).__name__}")
        if images.ndim != 4 or tuple(images.shape[1:]) != (c, s, s):
            raise ValueError(f"images must have shape (B, {c}, {s}, {s}), got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise ValueError(f"images must be floating point in [0, 1], got dtype {images.dtype}")
        lo, hi = images.min().item(), images.max().item()
        if lo < 0 or hi > 1:
            raise ValueError(f"images must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]")

    def check_ids(self, ids: torch.Tensor) -> None:
        g, v = self.config.grid_size, self.config.vocab_size
        if not isinstance(ids, torch.Tensor) or ids.dtype not in (torch.int64, torch.int32):
            got = getattr(ids, "dtype", type(ids).__name__)
            raise ValueError(f"ids must be an integer tensor of shape (B, {g}, {g}), got {got}")
        if ids.ndim != 3 or tuple(ids.shape[1:]) != (g, g):
            raise ValueError(f"ids must have shape (B, {g}, {g}), got {tuple(ids.shape)}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= v):
            raise ValueError(f"ids must be in [0, {v - 1}] (codebook size {v}), got [{ids.min()}, {ids.max()}]")

    def _quantize(self, images: torch.Tensor):
        """images in [0, 1] -> the quantizer's (quantized, ids, commit loss); the encoder reads them in its dtype."""
        self.check_images(images)
        return self.quantizer(self.encoder(images.to(self.encoder_dtype) * 2 - 1))

    def forward(self, images: torch.Tensor) -> VQOutput:
        quantized, ids, commit = self._quantize(images)
        return VQOutput((self.decoder(quantized.to(self.decoder_dtype)) + 1) / 2, ids, quantized, commit)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, S, S) in [0, 1] -> ids (B, h, w)."""
        return self._quantize(images)[1]

    @torch.no_grad()
    def decode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, h, w) -> images (B, 3, S, S) clamped to [0, 1]."""
        self.check_ids(ids)
        codes = self.quantizer.codes_from_ids(ids.long())
        return ((self.decoder(codes.to(self.decoder_dtype)) + 1) / 2).clamp(0, 1)

    @property
    def encoder_dtype(self) -> torch.dtype:
        return next(self.encoder.parameters()).dtype

    @property
    def decoder_dtype(self) -> torch.dtype:
        return next(self.decoder.parameters()).dtype
