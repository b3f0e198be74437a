"""Where each image code sits in the sequence, and the structural tokens around it (``ARConfig.image_layout``).

With 1-D positions a decoder must work out "row 11" as floor((position - offset) / 16), which a small model
learns slowly if at all. The layouts that keep a stock ``LlamaForCausalLM`` tell it with tokens instead:

    plain       BOI c c c ... c EOI                          (h * w codes in raster order)
    row_end     BOI c ... c EOL c ... c EOL ... c ... c EOL EOI   (Emu3, Lumina-mGPT: end-of-line after every row)
    row_start   BOI ROW_0 c ... c ROW_1 c ... c ... EOI      (the row is the nearest row token, the column the
                                                              offset to it)
    rope_2d     as plain, with 2-D rotary positions (row, column) on the codes (LlamaGen; not exportable)

Structural tokens depend on nothing but their place, so generation feeds them (``ImageLayout.lead`` before the
first code, ``ImageLayout.after[i]`` after code i); they are never sampled and never counted as image codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import ARConfig


@dataclass(frozen=True)
class ImageLayout:
    code_positions: tuple[int, ...]  # sequence position of each image code (raster order)
    lead: tuple[int, ...]  # structural token ids between BOI and the first code
    after: tuple[tuple[int, ...], ...]  # structural token ids after code i, before code i + 1 (none after the last)

    def forced_steps(self, config: ARConfig) -> dict[int, int]:
        """{generated-token index: token id} of every structural token, counting from the first token after BOI
        (what a server that generates the whole image part must force)."""
        structural = set(range(config.prefix_len, config.prefix_len + config.image_part_len)) - set(self.code_positions)
        part = image_part(config, torch.zeros(1, config.image_tokens, dtype=torch.long))[0]
        return {p - config.prefix_len: int(part[p - config.prefix_len]) for p in sorted(structural)}


def image_layout(config: ARConfig) -> ImageLayout:
    h = w = config.grid_size
    start = config.prefix_len
    if config.image_layout == "row_end":
        eol = config.structural_offset
        positions = tuple(start + r * (w + 1) + col for r in range(h) for col in range(w))
        after = tuple((eol,) if i % w == w - 1 and i < h * w - 1 else () for i in range(h * w))
        return ImageLayout(positions, (), after)
    if config.image_layout == "row_start":
        row0 = config.structural_offset
        positions = tuple(start + r * (w + 1) + 1 + col for r in range(h) for col in range(w))
        after = tuple((row0 + i // w + 1,) if i % w == w - 1 and i < h * w - 1 else () for i in range(h * w))
        return ImageLayout(positions, (row0,), after)
    return ImageLayout(tuple(range(start, start + h * w)), (), ((),) * (h * w))


def image_part(config: ARConfig, codes: torch.Tensor) -> torch.Tensor:
    """codes (B, image_tokens) in [0, codebook) -> token ids of the image part (B, image_part_len), the layout's
    structural tokens in place."""
    b, h, w = codes.shape[0], config.grid_size, config.grid_size
    tokens = codes.long() + config.image_offset
    if config.image_layout not in ("row_end", "row_start"):
        return tokens
    rows = tokens.view(b, h, w)
    if config.image_layout == "row_end":
        marks = torch.full((b, h, 1), config.structural_offset, dtype=torch.long, device=codes.device)
        return torch.cat([rows, marks], dim=2).view(b, -1)
    marks = (config.structural_offset + torch.arange(h, device=codes.device)).view(1, h, 1).expand(b, h, 1)
    return torch.cat([marks, rows], dim=2).view(b, -1)


def rope_2d_positions(config: ARConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, column) position of every sequence slot (max_seq_len,) for ``rope_2d``: a caption slot t is (t, t),
    image code (r, c) is (P + r, P + c) with P the prompt length, and EOI is (P + h, P + h)."""
    p, h = config.prefix_len, config.grid_size
    n = torch.arange(config.image_tokens)
    rows = torch.cat([torch.arange(p), p + n // h, torch.tensor([p + h])])
    cols = torch.cat([torch.arange(p), p + n % h, torch.tensor([p + h])])
    return rows, cols
