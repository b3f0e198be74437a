"""Pipelines of the hybrid mode (AR tokens -> VQ decode -> diffusion refiner) and of the diffusion-only baseline.

As in diffusers, a pipeline owns its scheduler (DPM-Solver++, built once from its model's noise schedule) and
its denoising loop, run in ``self.progress_bar``; the models are plain networks. ``RefinerPipeline`` is the
refiner's img2img (images in, refined images out); ``HybridPipeline`` chains ``TextToImage`` and it, the way
diffusers' combined pipelines chain theirs. All load from, and save to, the checkpoint folder of
``TextToImage`` (``refiner/`` and ``baseline/`` beside ``vq/``, ``caption_tokenizer/`` and ``decoder/``; each
listed in ``pipeline.json``), and the text-to-image ones return the same output type.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from diffusers.utils.torch_utils import randn_tensor

from ar_model.pipeline import TextToImage
from ar_model.pipeline_utils import (
    PipelineMixin,
    TextToImageOutput,
    check_prompts,
    load_component,
    per_image_generators,
    pil_to_pixels,
    pixels_to_pil,
    save_components,
)
from ar_model.sampling import check_cfg_scale, guide
from ar_model.text_tokenizer import CaptionTokenizer
from vq.pretrained import check_int

from .baseline import DiffusionBaseline
from .refiner import Refiner, check_images, check_refine_arguments, default_strength
from .schedulers import make_scheduler

# Best PSNR to the clean render of the tiny (residual) refiner, `t2i eval refiner` (README, "Hybrid mode").
# The default strength depends on the refiner's target: hybrid.refiner.default_strength.
DEFAULT_REFINE_STEPS = 2
DEFAULT_DIFFUSION_STEPS = 20
# The tiny baseline's judge pass rate on 120 prompts apart from the comparison's: 0.150 at 1.5, 0.108 at 3.0
# (README, "Hybrid mode and the diffusion-only baseline").
DEFAULT_BASELINE_CFG_SCALE = 1.5


class RefinerPipeline(PipelineMixin):
    """The refiner's img2img: images (B, 3, S, S) in [0, 1] -> refined images, same shape. ``refine_steps`` solver
    steps (0 returns the images unchanged) from noise at ``refine_strength`` (None: 1.0 for a residual refiner,
    0.3 for an image one)."""

    def __init__(self, refiner: Refiner, scheduler=None):
        self.refiner = refiner.eval()
        self.scheduler = make_scheduler(refiner.config) if scheduler is None else scheduler

    @classmethod
    def from_pretrained(cls, path: str | Path, device=None) -> "RefinerPipeline":
        return cls(load_component(Path(path), "refiner", Refiner).to(device))

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> None:
        save_components(path, {"refiner": self.refiner}, dtype)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, refine_steps: int = DEFAULT_REFINE_STEPS,
                 refine_strength: float | None = None,
                 generator: torch.Generator | list[torch.Generator] | None = None) -> torch.Tensor:
        config = self.refiner.config
        steps, strength = refine_steps, default_strength(config) if refine_strength is None else refine_strength
        check_images(images, config.image_size)
        check_refine_arguments(steps, strength, config)
        if steps == 0 or strength == 0:
            return images
        scheduler = self.scheduler
        # Spread ceil(steps / strength) steps over the whole schedule and run the last `steps` of them
        # (diffusers' img2img convention), so `steps` is exactly the number of UNet calls. More steps than
        # the schedule has timesteps would repeat timesteps (and divide by zero in the solver).
        total = min(math.ceil(steps / strength), config.num_train_timesteps)
        scheduler.set_timesteps(total, device=images.device)
        timesteps = scheduler.timesteps[-steps:]
        scheduler.set_begin_index(len(scheduler.timesteps) - steps)
        condition = images * 2 - 1
        residual = config.target == "residual"
        noise = randn_tensor(condition.shape, generator=generator, device=images.device, dtype=condition.dtype)
        start = torch.zeros_like(condition) if residual else condition
        x = scheduler.add_noise(start, noise, timesteps[:1].repeat(len(images)))
        for t in self.progress_bar(timesteps, desc="refining", leave=False):
            prediction = self.refiner(x, t.repeat(len(images)), condition)
            x = scheduler.step(prediction, t, x, generator=generator).prev_sample
        if residual:
            x = condition + x * config.residual_scale
        return ((x + 1) / 2).clamp(0, 1)


class HybridPipeline(PipelineMixin):
    """``TextToImage`` for layout and text, then ``RefinerPipeline`` for detail. Same call as ``TextToImage`` plus
    ``refine_steps`` (0 returns the AR image unchanged) and ``refine_strength`` (how much noise to start from;
    None: 1.0 for a residual refiner, 0.3 for an image one)."""

    def __init__(self, text_to_image: TextToImage, refiner: Refiner, scheduler=None):
        if refiner.config.image_size != text_to_image.vq.config.image_size:
            raise ValueError(f"the refiner works on {refiner.config.image_size} px images but the AR pipeline "
                             f"makes {text_to_image.vq.config.image_size} px")
        self.ar, self.refiner_pipe = text_to_image, RefinerPipeline(refiner, scheduler)

    @property
    def refiner(self) -> Refiner:
        return self.refiner_pipe.refiner

    @property
    def scheduler(self):
        return self.refiner_pipe.scheduler

    @classmethod
    def from_pretrained(cls, path: str | Path, device=None) -> "HybridPipeline":
        path = Path(path)
        refiner = load_component(path, "refiner", Refiner).to(device)
        return cls(TextToImage.from_pretrained(path, device=device), refiner)

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> None:
        self.ar.save_pretrained(path, dtype)
        self.refiner_pipe.save_pretrained(path, dtype)

    def set_progress_bar_config(self, **kwargs) -> None:
        """The settings of both stages (as diffusers' combined pipelines pass theirs on)."""
        super().set_progress_bar_config(**kwargs)
        self.ar.set_progress_bar_config(**kwargs)
        self.refiner_pipe.set_progress_bar_config(**kwargs)

    @torch.no_grad()
    def __call__(self, prompt, num_images: int = 1, refine_steps: int = DEFAULT_REFINE_STEPS,
                 refine_strength: float | None = None, generator=None, **kwargs) -> TextToImageOutput:
        if refine_strength is None:
            refine_strength = default_strength(self.refiner.config)
        check_refine_arguments(refine_steps, refine_strength, self.refiner.config)  # before any generation
        prompts = check_prompts(prompt, num_images)
        generators = per_image_generators(generator, len(prompts) * num_images)
        out = self.ar(prompts, num_images=num_images, generator=generators, **kwargs)
        if refine_steps == 0:
            return out
        images = pil_to_pixels(out.images, self.ar.device)
        refined = self.refiner_pipe(images, refine_steps, refine_strength, generators)
        return TextToImageOutput(pixels_to_pil(refined), out.ids, out.prompts, out.log_probs)


class DiffusionBaselinePipeline(PipelineMixin):
    """The diffusion-only baseline, called like ``TextToImage`` where it applies (no sampler choice: DPM-Solver++
    with ``num_inference_steps`` steps). Its images have no tokens: ``ids`` is None."""

    def __init__(self, caption_tokenizer: CaptionTokenizer, baseline: DiffusionBaseline,
                 default_cfg_scale: float = DEFAULT_BASELINE_CFG_SCALE, scheduler=None):
        if caption_tokenizer.vocab_size != baseline.config.text_vocab_size:
            raise ValueError(f"the baseline reads {baseline.config.text_vocab_size} caption pieces but the caption "
                             f"tokenizer has {caption_tokenizer.vocab_size}")
        self.caption_tokenizer, self.baseline = caption_tokenizer, baseline.eval()
        self.default_cfg_scale = default_cfg_scale
        self.scheduler = make_scheduler(baseline.config) if scheduler is None else scheduler

    @classmethod
    def from_pretrained(cls, path: str | Path, device=None) -> "DiffusionBaselinePipeline":
        path = Path(path)
        tokenizer = load_component(path, "caption_tokenizer", CaptionTokenizer)
        return cls(tokenizer, load_component(path, "baseline", DiffusionBaseline).to(device))

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> None:
        save_components(path, {"caption_tokenizer": self.caption_tokenizer, "baseline": self.baseline}, dtype)

    @torch.no_grad()
    def __call__(self, prompt, num_images: int = 1, cfg_scale: float | None = None,
                 num_inference_steps: int = DEFAULT_DIFFUSION_STEPS, generator=None) -> TextToImageOutput:
        prompts = check_prompts(prompt, num_images)
        cfg_scale = self.default_cfg_scale if cfg_scale is None else cfg_scale
        check_cfg_scale(cfg_scale)
        check_int("num_inference_steps", num_inference_steps, 1)
        pieces = [self.caption_tokenizer.encode(p) for p in prompts]
        all_prompts = [p for p in prompts for _ in range(num_images)]
        generators = per_image_generators(generator, len(all_prompts))
        device = next(self.baseline.parameters()).device
        ids = self.baseline.captions([ids for ids in pieces for _ in range(num_images)]).to(device)
        images = self.denoise(ids, num_inference_steps, cfg_scale, generators)
        return TextToImageOutput(pixels_to_pil(images), None, all_prompts)

    @torch.no_grad()
    def denoise(self, caption_ids: torch.Tensor, num_inference_steps: int, cfg_scale: float,
                generator: torch.Generator | list[torch.Generator] | None = None) -> torch.Tensor:
        """The denoising loop: caption_ids (B, L) -> images (B, 3, S, S) in [0, 1]."""
        model, c = self.baseline, self.baseline.config
        batch, device = caption_ids.shape[0], caption_ids.device
        scheduler = self.scheduler
        scheduler.set_timesteps(num_inference_steps, device=device)
        guided = cfg_scale != 1
        ids = torch.cat([caption_ids, model.null_captions(batch).to(device)]) if guided else caption_ids
        states, keep = model.encode_text(ids)  # the captions do not change across steps: encode once
        x = randn_tensor((batch, 3, c.image_size, c.image_size), generator=generator, device=device,
                         dtype=states.dtype) * scheduler.init_noise_sigma
        for t in self.progress_bar(scheduler.timesteps, desc="denoising", leave=False):
            inputs = torch.cat([x, x]) if guided else x
            prediction = model.unet(inputs, t.repeat(len(inputs)), encoder_hidden_states=states,
                                    encoder_attention_mask=keep.float()).sample
            if guided:
                prediction = guide(*prediction.chunk(2), cfg_scale)  # (cond, uncond) halves
            x = scheduler.step(prediction, t, x, generator=generator).prev_sample
        return ((x + 1) / 2).clamp(0, 1)
