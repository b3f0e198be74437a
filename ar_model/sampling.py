"""Pure functions on logits: argument checks, classifier-free guidance, top-k / top-p filtering, sampling.

Each image has its own ``torch.Generator``, so an image depends on its seed alone, not on the batch it was in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SAMPLERS = ("greedy", "sample", "beam")
CFG_SCHEDULES = ("constant", "linear")


@dataclass(frozen=True)
class SamplingConfig:
    sampler: str = "greedy"
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    cfg_scale: float = 1.0
    cfg_schedule: str = "constant"  # linear: the scale ramps from 1 at the first image token to cfg_scale at the last
    cfg_interval: int | None = None  # image tokens that get guidance (None: all); after them the batch halves
    beam_width: int = 1  # with sampler="beam"

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {list(SAMPLERS)}, got {self.sampler!r}")
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)) \
                or not self.temperature >= 0:
            raise ValueError(f"temperature must be a number >= 0, got {self.temperature!r}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int)
                                       or self.top_k < 1):
            raise ValueError(f"top_k must be None or an integer >= 1, got {self.top_k!r}")
        if self.top_p is not None and (isinstance(self.top_p, bool) or not isinstance(self.top_p, (int, float))
                                       or not 0 < self.top_p <= 1):
            raise ValueError(f"top_p must be None or a number in (0, 1], got {self.top_p!r}")
        check_cfg_scale(self.cfg_scale)
        if self.cfg_schedule not in CFG_SCHEDULES:
            raise ValueError(f"cfg_schedule must be one of {list(CFG_SCHEDULES)}, got {self.cfg_schedule!r}")
        if self.cfg_interval is not None and (isinstance(self.cfg_interval, bool) or
                                              not isinstance(self.cfg_interval, int) or self.cfg_interval < 0):
            raise ValueError(f"cfg_interval must be None or an integer >= 0, got {self.cfg_interval!r}")
        if isinstance(self.beam_width, bool) or not isinstance(self.beam_width, int) or self.beam_width < 1:
            raise ValueError(f"beam_width must be an integer >= 1, got {self.beam_width!r}")

    @property
    def greedy(self) -> bool:
        return self.sampler == "greedy" or self.temperature == 0

    @property
    def guided(self) -> bool:
        return self.cfg_scale != 1 and self.cfg_interval != 0

    def scale_at(self, index: int, length: int) -> float:
        """The guidance scale of image token ``index`` of ``length``."""
        if self.cfg_schedule == "linear" and length > 1:
            return 1.0 + (self.cfg_scale - 1.0) * index / (length - 1)
        return float(self.cfg_scale)


def check_cfg_scale(cfg_scale) -> None:
    """A guidance scale is a number >= 1 (1 turns guidance off); shared by the AR and diffusion pipelines."""
    if isinstance(cfg_scale, bool) or not isinstance(cfg_scale, (int, float)) or not cfg_scale >= 1:
        raise ValueError(f"cfg_scale must be a number >= 1 (1 turns guidance off), got {cfg_scale!r}")


def guide(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance on logits: uncond + scale * (cond - uncond)."""
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
    if generators is None:
        return torch.multinomial(probs, 1).squeeze(-1)
    # A generator draws on its own device (a CPU generator with a CUDA model samples on the CPU, as in diffusers).
    return torch.cat([torch.multinomial(p.to(g.device), 1, generator=g).to(p.device)
                      for p, g in zip(probs, generators)])
