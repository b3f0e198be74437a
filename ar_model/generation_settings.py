"""What one ``TextToImage`` call asks for besides its prompt (``GenerationSettings``), and the checkpoint's defaults
that the settings it leaves open take (``generation_defaults`` in pipeline.json).

``__call__`` builds the settings from its keyword arguments and ``complete`` / ``regenerate`` from theirs, so
the three share one set of names, defaults and checks.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch

from vq.pretrained import check_int

from .sampling import BEAM_SAMPLERS, DRAWING_SAMPLERS, SamplingConfig

DEFAULT_GUIDANCE_SCALE = 3.0
# What a call that names no sampling setting gets when pipeline.json records none (a checkpoint records its own,
# chosen by measurement: `t2i release --default-...`).
GENERATION_DEFAULTS = {"sampler": "greedy", "temperature": 1.0, "top_k": None, "top_p": None,
                       "guidance_scale": DEFAULT_GUIDANCE_SCALE, "beam_width": 4}


def check_generation_defaults(defaults: dict) -> dict:
    """Complete ``defaults`` with GENERATION_DEFAULTS and check them as a call would; unknown keys are errors."""
    unknown = sorted(set(defaults) - set(GENERATION_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown generation defaults {unknown}; allowed: {sorted(GENERATION_DEFAULTS)}")
    merged = {**GENERATION_DEFAULTS, **defaults}
    SamplingConfig(merged["sampler"], merged["temperature"], merged["top_k"], merged["top_p"], merged["guidance_scale"],
                   beam_width=merged["beam_width"])
    return merged


@dataclass(frozen=True)
class GenerationSettings:
    """``TextToImage.__call__``'s keyword arguments, with its defaults (a test keeps the two equal).
    ``sampler``, ``temperature``, ``top_k``, ``top_p``, ``guidance_scale`` and ``beam_width`` left at None take the
    checkpoint's defaults; ``top_k=0`` and ``top_p=1.0`` turn those filters off. The order is diffusers' (prompt-side
    arguments, then guidance, generator, output, callback, size), then the sampler's."""

    negative_prompt: str | list[str] | None = None
    num_images_per_prompt: int = 1
    guidance_scale: float | None = None
    generator: torch.Generator | list[torch.Generator] | None = None
    output_type: str = "pil"
    callback_on_step_end: Callable | None = None
    height: int | None = None
    width: int | None = None
    sampler: str | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    guidance_schedule: str = "constant"
    guidance_interval: int | None = None
    beam_width: int | None = None  # with a beam sampler
    num_inference_steps: int | None = None  # only the number of image tokens: a decoder step each
    strict: bool = False  # a prompt the checkpoint does not know is an error, not a warning

    @classmethod
    def from_kwargs(cls, kwargs: dict) -> "GenerationSettings":
        """Keyword arguments of an editing call -> settings; a name ``__call__`` does not take is an error."""
        allowed = sorted(f.name for f in fields(cls))
        unknown = sorted(set(kwargs) - set(allowed))
        if unknown:
            raise ValueError(f"unknown arguments {unknown}; allowed: {allowed}")
        return cls(**kwargs)

    def sampling(self, defaults: dict) -> SamplingConfig:
        """The call's sampling settings, those left None taken from ``defaults``; checked by SamplingConfig."""
        # None takes the checkpoint's default; 0 (top_k) and 1.0 (top_p) turn the filter off, as in transformers.
        top_k = self.top_k
        check_int("top_k", top_k, 0, optional=True,
                  allowed="None (the checkpoint's default), 0 (keep every code) or an integer >= 1")
        pick = (lambda value, name: defaults[name] if value is None else value)
        sampler = pick(self.sampler, "sampler")
        ignored = {name: value for name, value in (("temperature", self.temperature), ("top_k", top_k),
                                                   ("top_p", self.top_p)) if value is not None}
        if sampler not in DRAWING_SAMPLERS and ignored:  # as transformers does for do_sample=False
            given = ", ".join(f"{k}={v!r}" for k, v in ignored.items())
            warnings.warn(f"{given} has no effect with sampler {sampler!r}; only sampler='sample' and "
                          "'beam_sample' draw from the filtered distribution", UserWarning, stacklevel=4)
        if sampler not in BEAM_SAMPLERS and self.beam_width is not None:
            warnings.warn(f"beam_width={self.beam_width!r} has no effect with sampler {sampler!r}; only "
                          "sampler='beam' and 'beam_sample' keep beams", UserWarning, stacklevel=4)
        return SamplingConfig(sampler, pick(self.temperature, "temperature"),
                              defaults["top_k"] if top_k is None else (top_k or None), pick(self.top_p, "top_p"),
                              pick(self.guidance_scale, "guidance_scale"), self.guidance_schedule,
                              self.guidance_interval, pick(self.beam_width, "beam_width"))
