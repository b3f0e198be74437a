"""Pure functions on logits: argument checks, classifier-free guidance, top-k / top-p filtering, sampling.

Each image has its own ``torch.Generator``, so an image depends on its seed alone, not on the batch it was in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vq.pretrained import check_int, check_number

SAMPLERS = ("greedy", "sample", "beam", "beam_sample")
BEAM_SAMPLERS = ("beam", "beam_sample")  # keep beams (ar_model.beam)
DRAWING_SAMPLERS = ("sample", "beam_sample")  # draw from the tempered, filtered distribution
GUIDANCE_SCHEDULES = ("constant", "linear", "linear_decay")


@dataclass(frozen=True)
class SamplingConfig:
    sampler: str = "greedy"
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    guidance_scale: float = 1.0
    # linear: the scale ramps from 1 at the first image token to guidance_scale at the last;
    # linear_decay: it falls from guidance_scale at the first to 1 at the last
    guidance_schedule: str = "constant"
    guidance_interval: int | None = None  # image tokens that get guidance (None: all); after them the batch halves
    beam_width: int = 1  # with sampler="beam" or "beam_sample"

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {list(SAMPLERS)}, got {self.sampler!r}")
        check_number("temperature", self.temperature, 0)
        check_int("top_k", self.top_k, 1, optional=True)
        check_number("top_p", self.top_p, 0, 1, low_open=True, optional=True)
        check_guidance_scale(self.guidance_scale)
        if self.guidance_schedule not in GUIDANCE_SCHEDULES:
            raise ValueError(f"guidance_schedule must be one of {list(GUIDANCE_SCHEDULES)}, "
                             f"got {self.guidance_schedule!r}")
        check_int("guidance_interval", self.guidance_interval, 0, optional=True)
        check_int("beam_width", self.beam_width, 1)

    @property
    def greedy(self) -> bool:
        return self.sampler == "greedy" or self.temperature == 0

    @property
    def guided(self) -> bool:
        return self.guidance_scale != 1 and self.guidance_interval != 0

    def scale_at(self, index: int, length: int) -> float:
        """The guidance scale of image token ``index`` of ``length``."""
        if self.guidance_schedule != "constant" and length > 1:
            progress = index / (length - 1)
            if self.guidance_schedule == "linear_decay":
                progress = 1.0 - progress
            return 1.0 + (self.guidance_scale - 1.0) * progress
        return float(self.guidance_scale)


def check_guidance_scale(guidance_scale) -> None:
    """A guidance scale is a number >= 1 (1 turns guidance off); shared by the AR and diffusion pipelines."""
    check_number("guidance_scale", guidance_scale, 1, note=" (1 turns guidance off)")


def guide(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance, uncond + scale * (cond - uncond) (LlamaGen; diffusers): on the decoder's logits
    and on the baseline UNet's predictions alike."""
    return uncond + scale * (cond - uncond)


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Set to -inf every logit outside the top k, then outside the smallest set holding probability top_p."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        # Drop a token when the tokens ranked before it already hold top_p; the first one always stays.
        drop_sorted = (cum - sorted_logits.softmax(-1)) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample(logits: torch.Tensor, config: SamplingConfig, generators: list[torch.Generator] | None) -> torch.Tensor:
    """logits (B, V) -> ids (B,). Greedy is an explicit argmax; sampling draws row b with ``generators[b]``."""
    if config.greedy:
        return logits.argmax(-1)
    probs = filter_logits(logits / config.temperature, config.top_k, config.top_p).softmax(-1)
    return draw(probs, 1, generators).squeeze(-1)


def draw(weights: torch.Tensor, num: int, generators: list[torch.Generator] | None) -> torch.Tensor:
    """weights (B, V) >= 0 -> (B, num) indices drawn without replacement, row b with ``generators[b]``."""
    if generators is None:
        return torch.multinomial(weights, num)
    # A generator draws on its own device (a CPU generator with a CUDA model samples on the CPU, as in diffusers).
    return torch.stack([torch.multinomial(w.to(g.device), num, generator=g).to(w.device)
                        for w, g in zip(weights, generators)])
