"""The quantizer, from vector-quantize-pytorch: ``VectorQuantize`` (default) or ``FSQ``.

Takes and returns channel-first latents; ids come out as (B, h, w).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn
from vector_quantize_pytorch import FSQ, VectorQuantize

from .config import VQConfig


class Quantizer(nn.Module):
    def __init__(self, config: VQConfig):
        super().__init__()
        self.kind = config.quantizer
        if config.quantizer == "vq":
            # Every argument spelled out: the library's defaults move between releases.
            self.impl = VectorQuantize(
                dim=config.latent_dim,
                codebook_size=config.codebook_size,
                codebook_dim=config.codebook_dim,
                heads=1,
                decay=config.decay,
                kmeans_init=config.kmeans_init,
                kmeans_iters=config.kmeans_iters,
                use_cosine_sim=config.use_cosine_sim,
                threshold_ema_dead_code=config.threshold_ema_dead_code,
                commitment_weight=config.commitment_weight,
                rotation_trick=config.rotation_trick,
                ema_update=True,
                learnable_codebook=False,
                stochastic_sample_codes=False,
                orthogonal_reg_weight=0.0,
                codebook_diversity_loss_weight=0.0,
                sync_codebook=None,  # the library syncs EMA statistics across processes when distributed
                channel_last=True,
                accept_image_fmap=False,
            )
        else:
            self.impl = FSQ(levels=list(config.fsq_levels), dim=config.latent_dim)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z (B, D, h, w) -> quantized (B, D, h, w), ids (B, h, w) int64, commitment loss (scalar). z is matched
        against the codebook in the codebook's own dtype (float32 in a float16 release: see ``VQModel``)."""
        b, _, h, w = z.shape
        tokens = rearrange(z, "b d h w -> b (h w) d").to(self.dtype)
        if self.kind == "vq":
            quantized, ids, loss = self.impl(tokens)
        else:
            quantized, ids = self.impl(tokens)
            loss = tokens.new_zeros(())
        quantized = rearrange(quantized, "b (h w) d -> b d h w", h=h, w=w)
        return quantized, rearrange(ids, "b (h w) -> b h w", h=h, w=w).long(), loss

    @property
    def dtype(self) -> torch.dtype:
        return self.impl.codebook.dtype if self.kind == "vq" else torch.float32

    def codes_from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, h, w) -> quantized latents (B, D, h, w), as the forward pass produces them."""
        h, w = ids.shape[-2:]
        flat = rearrange(ids, "b h w -> b (h w)")
        if self.kind == "vq":
            codes = self.impl.get_output_from_indices(flat)
        else:
            codes = self.impl.indices_to_codes(flat)
        return rearrange(codes, "b (h w) d -> b d h w", h=h, w=w)
