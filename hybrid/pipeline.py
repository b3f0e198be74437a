"""Pipelines of the hybrid mode (AR tokens -> VQ decode -> diffusion refiner) and of the diffusion-only baseline.

Both load from the same checkpoint folder as ``TextToImage`` (``refiner/`` and ``baseline/`` beside ``vq/``,
``caption_tokenizer/`` and ``decoder/``) and return the same output type.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ar_model.pipeline import (
    TextToImage,
    TextToImageOutput,
    check_prompts,
    per_image_generators,
    pil_to_pixels,
    pixels_to_pil,
)
from ar_model.sampling import check_cfg_scale
from ar_model.text_tokenizer import CaptionTokenizer
from vq.pretrained import CheckpointError

from .baseline import DiffusionBaseline
from .refiner import Refiner, check_refine_arguments, default_strength

# Best PSNR to the clean render of the tiny (residual) refiner, `t2i eval refiner` (README, "Hybrid mode").
# The default strength depends on the refiner's target: hybrid.refiner.default_strength.
DEFAULT_REFINE_STEPS = 2
DEFAULT_DIFFUSION_STEPS = 20
# The tiny baseline's judge pass rate on 120 prompts apart from the comparison's: 0.150 at 1.5, 0.108 at 3.0
# (README, "Hybrid mode and the diffusion-only baseline").
DEFAULT_BASELINE_CFG_SCALE = 1.5


def load_component(path: Path, name: str, cls):
    if not (path / name).is_dir():
        raise CheckpointError(f"checkpoint {str(path)!r} has no {name}/ folder (train it with 't2i train {name}')")
    return cls.from_pretrained(path / name)


class HybridPipeline:
    """``TextToImage`` for layout and text, then the refiner for detail. Same call as ``TextToImage`` plus
    ``refine_steps`` (0 returns the AR image unchanged) and ``refine_strength`` (how much noise to start from;
    None: 1.0 for a residual refiner, 0.3 for an image one)."""

    def __init__(self, text_to_image: TextToImage, refiner: Refiner):
        if refiner.config.image_size != text_to_image.vq.config.image_size:
            raise ValueError(f"the refiner works on {refiner.config.image_size} px images but the AR pipeline "
                             f"makes {text_to_image.vq.config.image_size} px")
        self.ar, self.refiner = text_to_image, refiner.eval()

    @classmethod
    def from_pretrained(cls, path: str | Path, device=None) -> "HybridPipeline":
        path = Path(path)
        refiner = load_component(path, "refiner", Refiner).to(device)
        return cls(TextToImage.from_pretrained(path, device=device), refiner)

    def set_progress_bar_config(self, disable: bool = False) -> None:
        self.ar.set_progress_bar_config(disable=disable)

    @torch.no_grad()
    def __call__(self, prompt, num_images: int = 1, refine_steps: int = DEFAULT_REFINE_STEPS,
                 refine_strength: float | None = None, generator=None, **kwargs) -> TextToImageOutput:
        if refine_strength is None:
            refine_strength = default_strength(self.refiner.config)
        check_refine_arguments(refine_steps, refine_strength, self.refiner.config)  # before any generation
        prompts = self.ar.check_inputs(prompt, num_images)
        generators = per_image_generators(generator, len(prompts) * num_images)
        out = self.ar(prompts, num_images=num_images, generator=generators, **kwargs)
        if refine_steps == 0:
            return out
        images = pil_to_pixels(out.images, self.ar.device)
        refined = self.refiner.refine(images, refine_steps, refine_strength, generators)
        return TextToImageOutput(pixels_to_pil(refined), out.ids, out.prompts, out.log_probs)


class DiffusionBaselinePipeline:
    """The diffusion-only baseline, called like ``TextToImage`` where it applies (no sampler choice: DPM-Solver++
    with ``num_inference_steps`` steps)."""

    def __init__(self, caption_tokenizer: CaptionTokenizer, baseline: DiffusionBaseline,
                 default_cfg_scale: float = DEFAULT_BASELINE_CFG_SCALE):
        if caption_tokenizer.vocab_size != baseline.config.text_vocab_size:
            raise ValueError(f"the baseline reads {baseline.config.text_vocab_size} caption pieces but the caption "
                             f"tokenizer has {caption_tokenizer.vocab_size}")
        self.caption_tokenizer, self.baseline = caption_tokenizer, baseline.eval()
        self.default_cfg_scale = default_cfg_scale
        self.progress = True

    @classmethod
    def from_pretrained(cls, path: str | Path, device=None) -> "DiffusionBaselinePipeline":
        path = Path(path)
        tokenizer = load_component(path, "caption_tokenizer", CaptionTokenizer)
        return cls(tokenizer, load_component(path, "baseline", DiffusionBaseline).to(device))

    def set_progress_bar_config(self, disable: bool = False) -> None:
        self.progress = not disable

    @torch.no_grad()
    def __call__(self, prompt, num_images: int = 1, cfg_scale: float | None = None,
                 num_inference_steps: int = DEFAULT_DIFFUSION_STEPS, generator=None) -> TextToImageOutput:
        prompts = check_prompts(prompt, num_images)
        cfg_scale = self.default_cfg_scale if cfg_scale is None else cfg_scale
        check_cfg_scale(cfg_scale)
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) \
                or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be an integer >= 1, got {num_inference_steps!r}")
        pieces = [self.caption_tokenizer.encode(p) for p in prompts]
        all_prompts = [p for p in prompts for _ in range(num_images)]
        generators = per_image_generators(generator, len(all_prompts))
        device = next(self.baseline.parameters()).device
        ids = self.baseline.captions([ids for ids in pieces for _ in range(num_images)]).to(device)
        images = self.baseline.sample(ids, num_inference_steps, cfg_scale, generators, progress=self.progress)
        return TextToImageOutput(pixels_to_pil(images), torch.empty(0), all_prompts)
