"""The diffusion refiner: a ``diffusers`` ``UNet2DModel`` that denoises an image conditioned on the VQ decoding of
its tokens (condition concatenated to the noisy input), and what its trainer and its pipeline
(``hybrid.pipeline.RefinerPipeline``, which samples it with DPM-Solver++) need to know about it.

Refinement is img2img with a condition: noise the AR image to the level ``strength`` (0: none, 1: pure noise),
then take ``steps`` solver steps down to a clean image, the UNet seeing the AR image at every step. A refiner
with ``target="residual"`` diffuses the difference between the image and its condition instead (as SR3-style
super-resolution does): it starts from noise over a zero difference and adds what it sampled to the AR image.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DModel
from torch import nn

from vq.pretrained import PretrainedMixin, check_int, check_number

from .config import RefinerConfig


def residual_scale(images: torch.Tensor, conditions: torch.Tensor, sample: int = 4096, chunk: int = 256) -> float:
    """The standard deviation of (image - condition) in [-1, 1] units over the first ``sample`` pairs (uint8)."""
    total = total_sq = count = 0.0
    for start in range(0, min(sample, len(images)), chunk):
        residual = (images[start:start + chunk].double() - conditions[start:start + chunk].double()) / 127.5
        total, total_sq, count = total + residual.sum(), total_sq + residual.pow(2).sum(), count + residual.numel()
    std = float(((total_sq - total * total / count) / max(count - 1, 1)) ** 0.5) if count else 0.0
    if std == 0:
        raise ValueError("the images equal their conditions (the residual is zero): a residual refiner has "
                         "nothing to learn")
    return std


def default_strength(config: RefinerConfig) -> float:
    """1.0 for a residual refiner (pure noise over a zero residual: the setting that measured best); for an image
    refiner, a light img2img, 0.3 or its max_strength if lower (at 1.0 it would redraw the image from noise)."""
    return 1.0 if config.target == "residual" else min(0.3, config.max_strength)


def diffusion_clean(config, images: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
    """What a refiner learns to sample, from uint8 images and their conditions in [-1, 1]: the image in
    [-1, 1], or the scaled residual."""
    clean = images.float().div(127.5).sub(1)
    if config.target == "residual":
        return (clean - conditions) / config.residual_scale
    return clean


def check_images(images: torch.Tensor, size: int, name: str = "images") -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a tensor of shape (B, 3, {size}, {size}), got {got}")
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError(f"{name} must lie in [0, 1], got values in [{images.min():.3g}, {images.max():.3g}]")


def check_refine_arguments(steps, strength, config: RefinerConfig) -> None:
    """``refine_steps`` an integer >= 0 (at most the schedule's length), ``refine_strength`` a number in
    [0, max_strength]; else a ValueError naming them."""
    check_int("refine_steps", steps, 0, config.num_train_timesteps)
    most = config.max_strength
    trained = " (the refiner was trained on noise up to that strength)" if most < 1 else ""
    check_number("refine_strength", strength, 0, most, note=trained)


class Refiner(nn.Module, PretrainedMixin):
    config_class = RefinerConfig

    def __init__(self, config: RefinerConfig):
        super().__init__()
        self.config = config
        levels = len(config.block_out_channels)
        self.unet = UNet2DModel(
            sample_size=config.image_size, in_channels=6, out_channels=3,
            block_out_channels=config.block_out_channels, layers_per_block=config.layers_per_block,
            down_block_types=("DownBlock2D",) * levels, up_block_types=("UpBlock2D",) * levels,
            norm_num_groups=config.norm_num_groups, add_attention=False,  # convolutions only: cheap on a CPU
        )

    def forward(self, noisy: torch.Tensor, t: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """noisy, condition (B, 3, S, S) in [-1, 1]; t (B,) -> prediction (B, 3, S, S)."""
        return self.unet(torch.cat([noisy, condition], dim=1), t).sample
