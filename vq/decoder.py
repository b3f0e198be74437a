"""Latent (B, latent_dim, h, w) -> image (B, C, h*f, w*f), the mirror of the encoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ResBlock, Upsample, norm


class Decoder(nn.Module):
    def __init__(self, channels: int, base_channels: int, channel_mult: tuple[int, ...], num_res_blocks: int,
                 latent_dim: int, norm_kind: str = "group"):
        super().__init__()
        width = base_channels * channel_mult[-1]
        self.conv_in = nn.Conv2d(latent_dim, width, 3, padding=1)
        blocks: list[nn.Module] = [ResBlock(width, width, norm_kind)]
        for level, mult in reversed(list(enumerate(channel_mult))):
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(width, base_channels * mult, norm_kind))
                width = base_channels * mult
            if level > 0:
                blocks.append(Upsample(width))
        self.blocks = nn.Sequential(*blocks)
        self.norm_out = norm(width, norm_kind)
        self.conv_out = nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv_out(F.silu(self.norm_out(self.blocks(self.conv_in(z)))))
