"""The diffusion-only baseline: a ``diffusers`` ``UNet2DConditionModel`` with cross-attention over a small caption
encoder trained from scratch on the same captions, with the same caption tokenizer, as the AR model.

Classifier-free guidance as in the AR model: captions are dropped to the null caption (NULL, then PADs) in
training, and sampling doubles the batch (``hybrid.pipeline.DiffusionBaselinePipeline``, with DPM-Solver++).
"""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from torch import nn

from ar_model.sequence import null_captions, pad_captions
from vq.pretrained import PretrainedMixin

from .config import BaselineConfig


class CaptionEncoder(nn.Module):
    """Caption pieces (B, L) -> per-token features (B, L, D): embeddings, learned positions, a pre-norm
    transformer encoder (``torch.nn.TransformerEncoder``)."""

    def __init__(self, vocab_size: int, max_len: int, dim: int, layers: int, heads: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.position = nn.Parameter(torch.zeros(max_len, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        nn.init.normal_(self.position, std=0.02)

    def forward(self, ids: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids) + self.position[: ids.shape[1]]
        return self.norm(self.encoder(x, src_key_padding_mask=pad_mask))


class DiffusionBaseline(nn.Module, PretrainedMixin):
    config_class = BaselineConfig

    def __init__(self, config: BaselineConfig):
        super().__init__()
        self.config = config
        self.text = CaptionEncoder(config.text_vocab_size + 2, config.max_caption_tokens, config.text_dim,
                                   config.text_layers, config.text_heads)
        levels, attn = len(config.block_out_channels), config.attention_levels
        self.unet = UNet2DConditionModel(
            sample_size=config.image_size, in_channels=3, out_channels=3,
            block_out_channels=config.block_out_channels, layers_per_block=config.layers_per_block,
            down_block_types=("DownBlock2D",) * (levels - attn) + ("CrossAttnDownBlock2D",) * attn,
            up_block_types=("CrossAttnUpBlock2D",) * attn + ("UpBlock2D",) * (levels - attn),
            norm_num_groups=config.norm_num_groups, cross_attention_dim=config.text_dim,
            attention_head_dim=config.attention_head_dim,
        )

    def captions(self, pieces: list[list[int]]) -> torch.Tensor:
        """Caption piece ids -> (B, max_caption_tokens) ids, PAD-filled."""
        return pad_captions(pieces, self.config.max_caption_tokens, self.config.pad_id)

    def null_captions(self, batch: int) -> torch.Tensor:
        return null_captions(batch, self.config.max_caption_tokens, self.config.null_id, self.config.pad_id)

    def encode_text(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pad = ids == self.config.pad_id
        return self.text(ids, pad), ~pad

    def forward(self, noisy: torch.Tensor, t: torch.Tensor, caption_ids: torch.Tensor) -> torch.Tensor:
        """noisy (B, 3, S, S) in [-1, 1], t (B,), caption_ids (B, L) -> prediction (B, 3, S, S)."""
        states, keep = self.encode_text(caption_ids)
        return self.unet(noisy, t, encoder_hidden_states=states, encoder_attention_mask=keep.float()).sample
