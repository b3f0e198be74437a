"""Beam search over image tokens, consistent with classifier-free guidance.

Beams are ranked by the sum of log-probabilities under the *guided* distribution,
log_softmax(uncond + s * (cond - uncond)), over the image codes. The image length is fixed, so no length
penalty is needed. Each beam owns a conditional and an unconditional row of the KV cache; when beams are
re-ranked both halves are reordered together, and when guidance ends (``guidance_interval``) the unconditional rows
are dropped.

``sampler="beam_sample"`` is transformers' beam-search multinomial sampling (``do_sample=True, num_beams>1``):
each step's guided logits are temperature-scaled and top-k / top-p filtered, beams accumulate those log-probabilities,
and the next beams are 2 * width extensions drawn without replacement (with each prompt's generator) from the
softmax over all of a prompt's (beam, code) pairs, of which the width best are kept. Images then differ by seed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .generate import decode_one_token, feed_structural, image_logits, prefill, start_rows
from .layout import image_layout
from .model import ARDecoder
from .sampling import SamplingConfig, draw, filter_logits


@torch.no_grad()
def beam_search(model: ARDecoder, prompts: torch.Tensor, sampling: SamplingConfig,
                uncond_prompts: torch.Tensor | None = None, progress_bar: Callable | None = None,
                decode_fn=decode_one_token, callback: Callable | None = None,
                generators: list[torch.Generator] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """prompts (B, prefix_len) -> (codes (B, image_tokens), guided log-probability of each (B,)).

    Width ``sampling.beam_width``; guidance, ``progress_bar`` and ``callback`` as in ``generate`` (scale,
    schedule, interval, uncond prompts; the callback sees each prompt's best beam so far). With
    ``sampling.sampler == "beam_sample"`` the returned score is the sum of the filtered, tempered log-probabilities,
    and ``generators`` (one per prompt, or None) draw the extensions.
    """
    c = model.config
    layout = image_layout(c)
    batch, width, n_codes = prompts.shape[0], sampling.beam_width, c.codebook_size
    stochastic = sampling.sampler == "beam_sample" and sampling.temperature > 0
    expand = (lambda t: t.repeat_interleave(width, dim=0))  # (B, ...) -> (B * W, ...), beams of a prompt adjacent
    rows, guided = start_rows(model, expand(prompts), sampling,
                              None if uncond_prompts is None else expand(uncond_prompts))
    beams = batch * width
    with model.kv_caches(rows.shape[0]):  # allocated once for this call, gone after it
        device = prompts.device
        logits = prefill(model, rows, torch.arange(c.prefix_len, device=device))
        input_pos = torch.tensor([c.prefix_len], device=device)
        logits = feed_structural(model, logits, layout.lead, rows.shape[0], input_pos, decode_fn)
        # All beams of a prompt start identical: only the first may extend at step 0, or the top W would be copies.
        scores = torch.full((batch, width), float("-inf"), device=device)
        scores[:, 0] = 0.0
        seqs = torch.zeros(batch, width, c.image_tokens, dtype=torch.long, device=device)
        first_row = (torch.arange(batch, device=device) * width)[:, None]
        steps = range(c.image_tokens)
        for i in (steps if progress_bar is None else progress_bar(steps, desc="tokens (beam)")):
            step_logits = image_logits(model, logits, sampling.scale_at(i, c.image_tokens), beams).float()
            if stochastic:
                step_logits = filter_logits(step_logits / sampling.temperature, sampling.top_k, sampling.top_p)
            total = scores[..., None] + step_logits.log_softmax(-1).view(batch, width, n_codes)  # (B, W, codes)
            if stochastic:
                scores, flat = draw_extensions(total.view(batch, -1), width, generators)
            else:
                scores, flat = total.view(batch, -1).topk(width, dim=-1)  # (B, W)
            parent, code = flat // n_codes, flat % n_codes
            seqs = seqs.gather(1, parent[..., None].expand(-1, -1, c.image_tokens))
            seqs[:, :, i] = code
            if callback is not None:  # topk sorts: beam 0 is each prompt's best so far
                callback(i, i, {"ids": seqs[:, 0, :i + 1]})
            if i == c.image_tokens - 1:
                continue  # the last code is never fed; continue, not break, so a progress bar counts it
            source = (first_row + parent).view(-1)  # the cache row each new beam continues from
            # Only the image part written so far moves: a prompt's beams share its caption rows.
            model.reorder_caches(torch.cat([source, source + beams]) if guided else source, c.prefix_len,
                                 layout.code_positions[i])
            if guided and sampling.guidance_interval is not None and i + 1 >= sampling.guidance_interval:
                model.shrink_caches(beams)  # guidance is over: drop the unconditional rows
                guided = False
            token = (code.view(-1) + c.image_offset).repeat(2 if guided else 1)[:, None]
            logits = decode_fn(model, token, input_pos)
            input_pos += 1
            logits = feed_structural(model, logits, layout.after[i], token.shape[0], input_pos, decode_fn)
    best = scores.argmax(-1)
    index = torch.arange(batch, device=device)
    return seqs[index, best], scores[index, best]


def draw_extensions(total: torch.Tensor, width: int, generators: list[torch.Generator] | None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """total (B, W * codes) cumulative log-probabilities -> the ``width`` best of 2 * width (beam, code) pairs
    drawn without replacement from softmax(total), as (scores, flat indices), each (B, W), best first.

    A prompt with fewer live pairs than 2 * width (a small top-k at step 0) draws them all; a beam left without
    an extension gets score -inf, so it is never extended and never returned."""
    batch = total.shape[0]
    live = torch.isfinite(total).sum(-1)  # (B,) >= 1: some code of the best beam always survives filtering
    draws = int(min(2 * width, live.min().item()))
    picked = draw((total - total.amax(-1, keepdim=True)).exp(), draws, generators)  # (B, draws)
    picked_scores = total.gather(1, picked)
    if draws < width:  # pad with dead beams
        pad = width - draws
        picked = torch.cat([picked, picked[:, :1].expand(-1, pad)], 1)
        picked_scores = torch.cat([picked_scores, picked_scores.new_full((batch, pad), float("-inf"))], 1)
    scores, order = picked_scores.topk(width, dim=-1)
    return scores, picked.gather(1, order)
