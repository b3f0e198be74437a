"""A static key/value cache: buffers allocated once per (batch, length) and written in place at each step.

Decoding then allocates nothing per token, and the shapes never change, which is what lets
``torch.compile`` capture ``decode_one_token`` once (the gpt-fast design).
"""

from __future__ import annotations

import torch
from torch import nn


class KVCache(nn.Module):
    def __init__(self, batch_size: int, n_kv_heads: int, max_seq_len: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        super().__init__()
        shape = (batch_size, n_kv_heads, max_seq_len, head_dim)
        # Not persistent: a cache is scratch memory, never part of a checkpoint.
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, H, T, D) at positions ``input_pos`` (T,); return the whole buffers."""
        self.k[:, :, input_pos] = k
        self.v[:, :, input_pos] = v
        return self.k, self.v

    def shrink(self, batch_size: int) -> None:
        """Keep the first ``batch_size`` rows (views of the same memory, no copy)."""
        self.k, self.v = self.k[:batch_size], self.v[:batch_size]

    def reorder(self, index: torch.Tensor, start: int = 0, end: int | None = None) -> None:
        """Keep the rows ``index`` (B,) of the batch, in that order (beam search), for positions [start, end):
        the positions not yet written, and a prefix every reordered row shares, need no copy."""
        for buf in (self.k, self.v):
            part = buf[:, :, start:end]
            part.copy_(part.index_select(0, index))
