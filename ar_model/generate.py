"""The decode loop: ``prefill`` the prompt into the static KV cache, then ``decode_one_token`` per image token.

The two are separate functions (gpt-fast) so that the one-token step, whose shapes never change, can be
``torch.compile``d. Classifier-free guidance doubles the batch: rows [0, B) carry the captions, rows [B, 2B) the
null caption (or a negative prompt), and the guided logits pick one token that both halves then read.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .model import ARDecoder
from .sampling import SamplingConfig, guide, sample


def prefill(model: ARDecoder, tokens: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
    """tokens (B, T) at positions input_pos (T,) -> logits of the last position (B, V)."""
    return model(tokens, input_pos)[:, -1]


def decode_one_token(model: ARDecoder, token: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
    """token (B, 1) at position input_pos (1,) -> logits (B, V)."""
    return model(token, input_pos)[:, -1]


def image_logits(model: ARDecoder, logits: torch.Tensor, cfg_scale: float, batch: int) -> torch.Tensor:
    """Full-vocabulary logits (B or 2B, V) -> guided logits over the image codes only (B, codebook)."""
    c = model.config
    codes = logits[:, c.image_offset:c.image_offset + c.codebook_size]
    if codes.shape[0] == 2 * batch:
        return guide(codes[:batch], codes[batch:], cfg_scale)
    return codes


@torch.no_grad()
def generate(model: ARDecoder, prompts: torch.Tensor, sampling: SamplingConfig,
             generators: list[torch.Generator] | None = None, uncond_prompts: torch.Tensor | None = None,
             progress: bool = False, decode_fn=decode_one_token) -> torch.Tensor:
    """prompts (B, prefix_len): captions and BOI -> image codes (B, image_tokens), in [0, codebook_size).

    ``uncond_prompts`` (B, prefix_len) are the null captions for guidance; used when ``sampling.cfg_scale`` != 1.
    ``decode_fn`` may be a compiled ``decode_one_token``.
    """
    c = model.config
    batch, prefix = prompts.shape
    if prefix != c.prefix_len:
        raise ValueError(f"prompts must have {c.prefix_len} tokens (captions padded, then BOI), got {prefix}")
    if sampling.guided:
        if uncond_prompts is None or uncond_prompts.shape != prompts.shape:
            raise ValueError("cfg_scale != 1 needs uncond_prompts of the same shape as prompts")
        prompts = torch.cat([prompts, uncond_prompts])
    rows = prompts.shape[0]
    model.setup_caches(rows)
    device = prompts.device
    out = torch.empty(batch, c.image_tokens, dtype=torch.long, device=device)
    logits = prefill(model, prompts, torch.arange(prefix, device=device))
    input_pos = torch.tensor([prefix], device=device)
    for i in tqdm(range(c.image_tokens), desc="tokens", disable=not progress, leave=False):
        code = sample(image_logits(model, logits, sampling.cfg_scale, batch), sampling, generators)
        out[:, i] = code
        if i == c.image_tokens - 1:
            break
        token = (code + c.image_offset).repeat(rows // batch)[:, None]
        logits = decode_fn(model, token, input_pos)
        input_pos += 1
    return out
