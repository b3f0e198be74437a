"""Image (B, C, H, W) -> latent (B, latent_dim, H/f, W/f)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Downsample, ResBlock, norm


class Encoder(nn.Module):
    def __init__(self, channels: int, base_channels: int, channel_mult: tuple[int, ...], num_res_blocks: int,
                 latent_dim: int, norm_kind: str = "group"):
        super().__init__()
        self.conv_in = nn.Conv2d(channels, base_channels, 3, padding=1)
        blocks: list[nn.Module] = []
        width = base_channels
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(width, base_channels * mult, norm_kind))
                width = base_channels * mult
            if level < len(channel_mult) - 1:
                blocks.append(Downsample(width))
        blocks.append(ResBlock(width, width, norm_kind))
        self.blocks = nn.Sequential(*blocks)
        self.norm_out = norm(width, norm_kind)
        self.conv_out = nn.Conv2d(width, latent_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(F.silu(self.norm_out(self.blocks(self.conv_in(x)))))
