"""The decoder: a plain Llama (RMSNorm, 1-D rotary positions, SwiGLU, optional grouped-query attention).

Parameter names and maths follow ``transformers``' ``LlamaForCausalLM`` (``q_proj`` ... ``down_proj``,
``input_layernorm``, rotary embedding in the ``rotate_half`` layout, RMSNorm computed in float32), so export is
a renaming with no permutation. The structure follows gpt-fast: static KV caches and ``forward(idx, input_pos)``
attending over them; but the caches are installed only for a block (``with decoder.kv_caches(batch):``, what
``generate`` and ``beam_search`` do), so outside one the decoder is a pure function of its input, an ordinary
causal forward (training, scoring, export checks), whatever ran before.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from vq.pretrained import PretrainedMixin

from .config import ARConfig
from .kv_cache import KVCache
from .layout import rope_2d_positions


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rope_tables(head_dim: int, max_seq_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (max_seq_len, head_dim), both halves repeated (the ``rotate_half`` layout)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    freqs = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), inv_freq)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def rope_tables_2d(head_dim: int, rows: torch.Tensor, cols: torch.Tensor, theta: float
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """2-D rotary tables (LlamaGen's ``precompute_freqs_cis_2d``, in the ``rotate_half`` layout): of each head's
    head_dim / 2 rotated pairs, the first half turns with the row position, the second with the column.
    rows, cols (T,) -> cos, sin (T, head_dim)."""
    half = head_dim // 2
    inv_freq = 1.0 / theta ** (torch.arange(0, half, 2, dtype=torch.float32) / half)  # (head_dim / 4,)
    freqs = torch.cat([torch.outer(rows.float(), inv_freq), torch.outer(cols.float(), inv_freq)], dim=-1)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, H, T, D); cos, sin (T, D)."""
    return x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, config: ARConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, config.head_dim
        self.q_proj = nn.Linear(config.dim, config.n_heads * config.head_dim, bias=False)
        self.k_proj = nn.Linear(config.dim, config.n_kv_heads * config.head_dim, bias=False)
        self.v_proj = nn.Linear(config.dim, config.n_kv_heads * config.head_dim, bias=False)
        self.o_proj = nn.Linear(config.n_heads * config.head_dim, config.dim, bias=False)
        self.kv_cache: KVCache | None = None

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None,
                input_pos: torch.Tensor | None) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k = self.k_proj(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        v = self.v_proj(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.kv_cache is not None:
            k, v = self.kv_cache.update(input_pos, k, v)  # (B, Hkv, S, D): the whole cache, masked below
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=self.n_kv_heads != self.n_heads)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.n_kv_heads != self.n_heads)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, -1))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, config: ARConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.dim, config.norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.dim, config.norm_eps)
        self.mlp = MLP(config.dim, config.intermediate_size)

    def forward(self, x, cos, sin, mask, input_pos, dropout: float = 0.0):
        x = x + F.dropout(self.self_attn(self.input_layernorm(x), cos, sin, mask, input_pos), dropout, self.training)
        return x + F.dropout(self.mlp(self.post_attention_layernorm(x)), dropout, self.training)


class ARDecoder(nn.Module, PretrainedMixin):
    config_class = ARConfig

    def __init__(self, config: ARConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.lm_head = nn.Linear(config.dim, config.vocab_size, bias=False)
        if config.image_layout == "rope_2d":
            cos, sin = rope_tables_2d(config.head_dim, *rope_2d_positions(config), config.rope_theta)
        else:
            cos, sin = rope_tables(config.head_dim, config.max_seq_len, config.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        # Read only with caches installed (a cached step attends over the whole cache, masked by position).
        causal = torch.tril(torch.ones(config.max_seq_len, config.max_seq_len, dtype=torch.bool))
        self.register_buffer("causal_mask", causal, persistent=False)
        self.dropout = 0.0  # set by the trainer (token and residual dropout); a no-op in eval mode, not exported
        self.apply(self._init_weights)
        # GPT-2's scaled init of the projections that write into the residual stream.
        for name, p in self.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(p, std=0.02 / (2 * config.n_layers) ** 0.5)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    @property
    def caches_installed(self) -> bool:
        return self.layers[0].self_attn.kv_cache is not None

    @contextmanager
    def kv_caches(self, batch_size: int, dtype: torch.dtype | None = None) -> Iterator[None]:
        """Install static KV caches for ``batch_size`` sequences of the full length for the calls inside the block:
        allocated once on entering, written in place at ``input_pos`` (no allocation per token), removed on leaving,
        also after an error."""
        if self.caches_installed:
            raise RuntimeError("KV caches are already installed: kv_caches blocks do not nest")
        dtype = dtype or self.embed_tokens.weight.dtype
        device = self.embed_tokens.weight.device
        c = self.config
        for layer in self.layers:
            layer.self_attn.kv_cache = KVCache(batch_size, c.n_kv_heads, c.max_seq_len, c.head_dim, dtype, device)
        try:
            yield
        finally:
            for layer in self.layers:
                layer.self_attn.kv_cache = None

    def shrink_caches(self, batch_size: int) -> None:
        """Drop all but the first ``batch_size`` rows of every cache (guidance ends: the batch halves)."""
        for layer in self.layers:
            layer.self_attn.kv_cache.shrink(batch_size)

    def reorder_caches(self, index: torch.Tensor, start: int = 0, end: int | None = None) -> None:
        for layer in self.layers:
            layer.self_attn.kv_cache.reorder(index, start, end)

    def forward(self, idx: torch.Tensor, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        """idx (B, T) token ids -> logits (B, T, V), float32.

        Inside a ``kv_caches`` block, ``input_pos`` (T,) says where ``idx`` sits in the sequence and attention runs
        over everything cached so far; outside one, ``idx`` is the whole sequence from position 0.
        """
        if self.caches_installed:
            if input_pos is None:
                raise ValueError("input_pos is required inside a kv_caches block")
            cos, sin = self.rope_cos[input_pos], self.rope_sin[input_pos]
            mask = self.causal_mask[input_pos][None, None]  # (1, 1, T, S)
        else:
            t = idx.shape[1]
            if t > self.config.max_seq_len:
                raise ValueError(f"sequence of {t} tokens is longer than max_seq_len {self.config.max_seq_len}")
            cos, sin, mask, input_pos = self.rope_cos[:t], self.rope_sin[:t], None, None
        x = F.dropout(self.embed_tokens(idx), self.dropout, self.training)
        for layer in self.layers:
            x = layer(x, cos, sin, mask, input_pos, self.dropout)
        return self.lm_head(self.norm(x)).float()
