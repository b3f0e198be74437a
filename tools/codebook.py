"""Codebook statistics over a set of ids: usage (fraction of codes used) and perplexity."""

from __future__ import annotations

import torch


def code_histogram(ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    return torch.bincount(ids.flatten().long(), minlength=vocab_size)


def codebook_stats(counts: torch.Tensor) -> dict[str, float]:
    """``usage``: codes used at least once over the codebook size; ``perplexity``: exp of the code entropy."""
    p = counts.double() / counts.sum().clamp(min=1)
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return {"usage": (counts > 0).float().mean().item(), "perplexity": entropy.exp().item()}
