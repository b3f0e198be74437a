"""The decode loop: ``prefill`` the prompt into the static KV cache, then ``decode_one_token`` per image token.

The two are separate functions (gpt-fast) so that the one-token step, whose shapes never change, can be
``torch.compile``d. Classifier-free guidance doubles the batch: rows [0, B) carry the captions, rows [B, 2B) the
null caption (or a negative prompt), and the guided logits pick one token that both halves then read. The
layout's structural tokens (``ar_model.layout``) are fed where they belong, never sampled: sampling only ever
chooses among the image codes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .layout import image_layout
from .model import ARDecoder
from .sampling import SamplingConfig, guide, sample


def prefill(model: ARDecoder, tokens: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
    """tokens (B, T) at positions input_pos (T,) -> logits of the last position (B, V)."""
    return model(tokens, input_pos)[:, -1]


def decode_one_token(model: ARDecoder, token: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
    """token (B, 1) at position input_pos (1,) -> logits (B, V)."""
    return model(token, input_pos)[:, -1]


def feed_structural(model: ARDecoder, logits: torch.Tensor, tokens: tuple[int, ...], rows: int,
                    input_pos: torch.Tensor, decode_fn) -> torch.Tensor:
    """Feed the layout's structural ``tokens`` to all ``rows`` one at a time (advancing ``input_pos`` in place);
    returns the logits after the last one (``logits`` unchanged when there are none)."""
    for token in tokens:
        logits = decode_fn(model, torch.full((rows, 1), token, dtype=torch.long, device=input_pos.device), input_pos)
        input_pos += 1
    return logits


def image_logits(model: ARDecoder, logits: torch.Tensor, guidance_scale: float, batch: int) -> torch.Tensor:
    """Full-vocabulary logits (B or 2B, V) -> logits over the image codes only (B, codebook), guided when the
    rows hold an unconditional half."""
    c = model.config
    codes = logits[:, c.image_offset:c.image_offset + c.codebook_size]
    if codes.shape[0] == 2 * batch:
        return guide(codes[:batch], codes[batch:], guidance_scale)
    return codes


def start_rows(model: ARDecoder, prompts: torch.Tensor, sampling: SamplingConfig,
               uncond_prompts: torch.Tensor | None) -> tuple[torch.Tensor, bool]:
    """The rows to prefill: the prompts, and the unconditional prompts below them when guidance runs at all."""
    c = model.config
    if prompts.ndim != 2 or prompts.shape[1] != c.prefix_len:
        raise ValueError(f"prompts must have shape (B, {c.prefix_len}) (captions padded, then BOI), "
                         f"got {tuple(prompts.shape)}")
    if uncond_prompts is None:
        if sampling.guided:
            raise ValueError(f"guidance_scale {sampling.guidance_scale} needs uncond_prompts (null captions or a "
                             "negative prompt)")
        return prompts, False
    if uncond_prompts.shape != prompts.shape:
        raise ValueError(f"uncond_prompts must have the shape of prompts {tuple(prompts.shape)}, "
                         f"got {tuple(uncond_prompts.shape)}")
    if sampling.guidance_interval == 0:  # no token is guided: the unconditional half is never computed
        return prompts, False
    return torch.cat([prompts, uncond_prompts]), True


@torch.no_grad()
def generate(model: ARDecoder, prompts: torch.Tensor, sampling: SamplingConfig,
             generators: list[torch.Generator] | None = None, uncond_prompts: torch.Tensor | None = None,
             fixed: torch.Tensor | None = None, progress_bar: Callable | None = None,
             decode_fn=decode_one_token, callback: Callable | None = None) -> torch.Tensor:
    """prompts (B, prefix_len): captions and BOI -> image codes (B, image_tokens), in [0, codebook_size).

    ``uncond_prompts`` (B, prefix_len), the null captions or a negative prompt, are the unconditional half of
    guidance; the batch is doubled whenever they are given, and shrinks back to B after ``sampling.guidance_interval``
    tokens. ``fixed`` (B, image_tokens) holds codes to keep (-1 where the model chooses): the model reads them as
    if it had drawn them (editing). ``progress_bar(iterable, desc=...)`` wraps the token loop (tqdm, or a
    pipeline's ``progress_bar``; None: no bar). ``decode_fn`` may be a compiled ``decode_one_token``.
    ``callback(i, i, {"ids": codes so far (B, i + 1)})`` runs after each image token (a pipeline's
    ``callback_on_step_end``); what it returns is not used (the codes drawn stay drawn).
    """
    c = model.config
    layout = image_layout(c)
    batch = prompts.shape[0]
    rows, guided = start_rows(model, prompts, sampling, uncond_prompts)
    with model.kv_caches(rows.shape[0]):  # allocated once for this call, gone after it
        device = prompts.device
        out = torch.empty(batch, c.image_tokens, dtype=torch.long, device=device)
        logits = prefill(model, rows, torch.arange(c.prefix_len, device=device))
        input_pos = torch.tensor([c.prefix_len], device=device)
        logits = feed_structural(model, logits, layout.lead, rows.shape[0], input_pos, decode_fn)
        steps = range(c.image_tokens)
        for i in (steps if progress_bar is None else progress_bar(steps, desc="tokens")):
            scale = sampling.scale_at(i, c.image_tokens)
            code = sample(image_logits(model, logits, scale, batch), sampling, generators)
            if fixed is not None:
                code = torch.where(fixed[:, i] >= 0, fixed[:, i], code)
            out[:, i] = code
            if callback is not None:
                callback(i, i, {"ids": out[:, :i + 1]})
            if i == c.image_tokens - 1:
                continue  # the last code is never fed; continue, not break, so a progress bar counts it
            if guided and sampling.guidance_interval is not None and i + 1 >= sampling.guidance_interval:
                model.shrink_caches(batch)  # guidance is over: the unconditional half is dropped, not merely ignored
                guided = False
            token = (code + c.image_offset).repeat(2 if guided else 1)[:, None]
            logits = decode_fn(model, token, input_pos)
            input_pos += 1
            logits = feed_structural(model, logits, layout.after[i], token.shape[0], input_pos, decode_fn)
    return out
