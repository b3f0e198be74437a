"""How captions and image codes become one token sequence (layout documented in ``ar_model.config``)."""

from __future__ import annotations

import torch

from .config import ARConfig
from .layout import image_part


def pad_captions(pieces: list[list[int]], length: int, pad_id: int) -> torch.Tensor:
    """Caption piece ids -> (B, length) ids, PAD-filled; a longer caption is an error, never cut. (The AR prompts
    and the diffusion baseline's captions both use it.)"""
    out = torch.full((len(pieces), length), pad_id, dtype=torch.long)
    for row, ids in enumerate(pieces):
        if len(ids) > length:
            raise ValueError(f"caption {row} has {len(ids)} tokens; at most {length} fit")
        out[row, :len(ids)] = torch.as_tensor(ids, dtype=torch.long)
    return out


def caption_prefixes(config: ARConfig, captions: list[list[int]]) -> torch.Tensor:
    """Caption piece ids -> prompts (B, prefix_len): the pieces, PAD up to max_caption_tokens, then BOI."""
    padded = pad_captions(captions, config.max_caption_tokens, config.pad_id)
    for row, ids in enumerate(captions):
        if ids and not 0 <= min(ids) <= max(ids) < config.text_vocab_size:
            raise ValueError(f"caption {row} has piece ids outside [0, {config.text_vocab_size})")
    boi = torch.full((len(captions), 1), config.boi_id, dtype=torch.long)
    return torch.cat([padded, boi], dim=1)


def null_captions(batch: int, length: int, null_id: int, pad_id: int) -> torch.Tensor:
    """The null caption, NULL then PADs, (batch, length): what the unconditional half of classifier-free guidance
    reads (the AR prompts and the diffusion baseline's captions both use it)."""
    out = torch.full((batch, length), pad_id, dtype=torch.long)
    out[:, 0] = null_id
    return out


def null_prefixes(config: ARConfig, batch: int) -> torch.Tensor:
    """The null caption, then BOI, for ``batch`` rows (B, prefix_len): the unconditional half of guidance."""
    boi = torch.full((batch, 1), config.boi_id, dtype=torch.long)
    return torch.cat([null_captions(batch, config.max_caption_tokens, config.null_id, config.pad_id), boi], dim=1)


def training_sequences(config: ARConfig, prefixes: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """prefixes (B, prefix_len), codes (B, image_tokens) in [0, codebook) -> sequences (B, max_seq_len): the
    prompt, the image part in the config's layout, EOI."""
    eoi = torch.full((codes.shape[0], 1), config.eoi_id, dtype=torch.long, device=codes.device)
    return torch.cat([prefixes.to(codes.device), image_part(config, codes), eoi], dim=1)
