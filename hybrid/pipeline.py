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
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path

import torch
from diffusers.utils.torch_utils import randn_tensor

from ar_model.generation_settings import GenerationSettings
from ar_model.pipeline import TextToImage
from ar_model.pipeline_utils import (
    PipelineMixin,
    TextToImageOutput,
    check_callback,
    check_output_type,
    check_prompts,
    check_size,
    convert_images,
    encode_prompts,
    load_component,
    negative_prompts,
    parse_to_arguments,
    per_image_generators,
    save_components,
    step_callback,
)
from ar_model.prompt_world import PromptWorld, known_prompts
from ar_model.sampling import check_guidance_scale, guide
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
DEFAULT_BASELINE_GUIDANCE_SCALE = 1.5


class RefinerPipeline(PipelineMixin):
    """The refiner's img2img: images (B, 3, S, S) in [0, 1] -> refined images, same shape. ``refine_steps`` solver
    steps (0 returns the images unchanged) from noise at ``refine_strength`` (None: 1.0 for a residual refiner,
    0.3 for an image one)."""

    component_names = ("refiner", "scheduler")

    def __init__(self, refiner: Refiner, scheduler=None):
        self.refiner = refiner.eval()
        self.scheduler = make_scheduler(refiner.config) if scheduler is None else scheduler

    @classmethod
    def from_pretrained(cls, path: str | Path, torch_dtype: torch.dtype | None = torch.float32,
                        device: str | torch.device | None = None) -> "RefinerPipeline":
        device, dtype = parse_to_arguments((), device, torch_dtype)
        return cls(load_component(Path(path), "refiner", Refiner).to(device=device, dtype=dtype))

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> None:
        save_components(path, {"refiner": self.refiner}, dtype)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, refine_steps: int = DEFAULT_REFINE_STEPS,
                 refine_strength: float | None = None,
                 generator: torch.Generator | list[torch.Generator] | None = None,
                 callback: Callable | None = None) -> torch.Tensor:
        """``callback(step, timestep, {"latents": x})`` (a pipeline's ``step_callback``) runs after each solver
        step; the ``latents`` it returns replace the loop's."""
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
        condition = images.to(next((p.dtype for p in self.refiner.parameters()), images.dtype)) * 2 - 1
        residual = config.target == "residual"
        noise = randn_tensor(condition.shape, generator=generator, device=images.device, dtype=condition.dtype)
        start = torch.zeros_like(condition) if residual else condition
        x = scheduler.add_noise(start, noise, timesteps[:1].repeat(len(images)))
        for i, t in enumerate(self.progress_bar(timesteps, desc="refining", leave=False)):
            prediction = self.refiner(x, t.repeat(len(images)), condition)
            x = scheduler.step(prediction, t, x, generator=generator).prev_sample
            if callback is not None:
                x = callback(i, t, {"latents": x})["latents"]
        if residual:
            x = condition + x * config.residual_scale
        return ((x + 1) / 2).clamp(0, 1)


class HybridPipeline(PipelineMixin):
    """``TextToImage`` for layout and text, then ``RefinerPipeline`` for detail. Same call as ``TextToImage`` plus
    ``refine_steps`` (0 returns the AR image unchanged) and ``refine_strength`` (how much noise to start from;
    None: 1.0 for a residual refiner, 0.3 for an image one)."""

    component_names = ("vq", "caption_tokenizer", "decoder", "refiner", "scheduler")

    def __init__(self, text_to_image: TextToImage, refiner: Refiner, scheduler=None):
        if refiner.config.image_size != text_to_image.vq.config.image_size:
            raise ValueError(f"the refiner works on {refiner.config.image_size} px images but the AR pipeline "
                             f"makes {text_to_image.vq.config.image_size} px")
        self.ar, self.refiner_pipe = text_to_image, RefinerPipeline(refiner, scheduler)

    @property
    def refiner(self) -> Refiner:
        return self.refiner_pipe.refiner

    @property
    def vq(self):
        return self.ar.vq

    @property
    def caption_tokenizer(self):
        return self.ar.caption_tokenizer

    @property
    def decoder(self):
        return self.ar.decoder

    @property
    def prompt_world(self):
        return self.ar.prompt_world

    def _modules(self):
        return [self.decoder, self.vq, self.refiner]

    def _config_settings(self) -> dict:
        return self.ar._config_settings()

    @property
    def scheduler(self):
        return self.refiner_pipe.scheduler

    @classmethod
    def from_pretrained(cls, path: str | Path, torch_dtype: torch.dtype | None = torch.float32,
                        device: str | torch.device | None = None) -> "HybridPipeline":
        device, dtype = parse_to_arguments((), device, torch_dtype)
        text_to_image = TextToImage.from_pretrained(path, torch_dtype=dtype, device=device)
        return cls(text_to_image, load_component(Path(path), "refiner", Refiner).to(device=device, dtype=dtype))

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> None:
        self.ar.save_pretrained(path, dtype)
        self.refiner_pipe.save_pretrained(path, dtype)

    def set_progress_bar_config(self, **kwargs) -> None:
        """The settings of both stages (as diffusers' combined pipelines pass theirs on)."""
        super().set_progress_bar_config(**kwargs)
        self.ar.set_progress_bar_config(**kwargs)
        self.refiner_pipe.set_progress_bar_config(**kwargs)

    @torch.no_grad()
    def __call__(self, prompt, negative_prompt=None, num_images_per_prompt: int = 1,
                 guidance_scale: float | None = None, generator=None, output_type: str = "pil",
                 callback_on_step_end: Callable | None = None, height: int | None = None, width: int | None = None,
                 refine_steps: int = DEFAULT_REFINE_STEPS, refine_strength: float | None = None,
                 **sampler_kwargs) -> TextToImageOutput:
        """``TextToImage``'s call (its sampler arguments in ``sampler_kwargs``) plus ``refine_steps`` and
        ``refine_strength``. ``callback_on_step_end`` sees the image tokens as steps 0 .. tokens - 1 (with
        ``ids``), then the refiner's solver steps after them (with ``latents``)."""
        if refine_strength is None:
            refine_strength = default_strength(self.refiner.config)
        check_refine_arguments(refine_steps, refine_strength, self.refiner.config)  # before any generation
        unknown = sorted(set(sampler_kwargs) - {f.name for f in fields(GenerationSettings)})
        if unknown:
            raise TypeError(f"HybridPipeline.__call__() got unexpected keyword arguments {unknown}")
        settings = GenerationSettings(
            negative_prompt=negative_prompt, num_images_per_prompt=num_images_per_prompt,
            guidance_scale=guidance_scale, output_type=output_type, callback_on_step_end=callback_on_step_end,
            height=height, width=width, **sampler_kwargs)
        prompts = check_prompts(prompt, num_images_per_prompt)
        generators = per_image_generators(generator, len(prompts) * num_images_per_prompt)
        settings = replace(settings, generator=generators)
        codes, log_probs, all_prompts = self.ar.generate_codes(prompts, settings, pipe=self)
        grid = self.decoder.config.grid_size
        ids = codes.view(-1, grid, grid)
        # The refiner starts from the 8-bit AR image, the one TextToImage returns.
        pixels = convert_images(self.vq.decode_ids(ids).float(), "pt").to(self.device)
        if refine_steps:
            callback = step_callback(self, callback_on_step_end, offset=self.decoder.config.image_tokens)
            pixels = self.refiner_pipe(pixels, refine_steps, refine_strength, generators, callback)
        return TextToImageOutput(convert_images(pixels.float(), output_type), ids.cpu(), all_prompts,
                                 None if log_probs is None else log_probs.cpu())


class DiffusionBaselinePipeline(PipelineMixin):
    """The diffusion-only baseline, called like ``TextToImage`` where it applies (no sampler choice: DPM-Solver++
    with ``num_inference_steps`` steps). Its images have no tokens: ``ids`` is None."""

    component_names = ("caption_tokenizer", "baseline", "scheduler")

    def __init__(self, caption_tokenizer: CaptionTokenizer, baseline: DiffusionBaseline,
                 default_guidance_scale: float = DEFAULT_BASELINE_GUIDANCE_SCALE, scheduler=None,
                 prompt_world: PromptWorld | None = None):
        if caption_tokenizer.vocab_size != baseline.config.text_vocab_size:
            raise ValueError(f"the baseline reads {baseline.config.text_vocab_size} caption pieces but the caption "
                             f"tokenizer has {caption_tokenizer.vocab_size}")
        self.caption_tokenizer, self.baseline = caption_tokenizer, baseline.eval()
        self.default_guidance_scale = default_guidance_scale
        self.scheduler = make_scheduler(baseline.config) if scheduler is None else scheduler
        self.prompt_world = prompt_world  # as TextToImage's: the training captions' words (world.json)

    def _config_settings(self) -> dict:
        return {"default_guidance_scale": self.default_guidance_scale}

    @classmethod
    def from_pretrained(cls, path: str | Path, torch_dtype: torch.dtype | None = torch.float32,
                        device: str | torch.device | None = None) -> "DiffusionBaselinePipeline":
        device, dtype = parse_to_arguments((), device, torch_dtype)
        path = Path(path)
        tokenizer = load_component(path, "caption_tokenizer", CaptionTokenizer)
        return cls(tokenizer, load_component(path, "baseline", DiffusionBaseline).to(device=device, dtype=dtype),
                   prompt_world=PromptWorld.from_pretrained(path))

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> None:
        save_components(path, {"caption_tokenizer": self.caption_tokenizer, "baseline": self.baseline}, dtype)
        if self.prompt_world is not None:
            self.prompt_world.save_pretrained(path)

    @torch.no_grad()
    def __call__(self, prompt, negative_prompt=None, num_images_per_prompt: int = 1,
                 guidance_scale: float | None = None, generator=None, output_type: str = "pil",
                 callback_on_step_end: Callable | None = None, height: int | None = None, width: int | None = None,
                 num_inference_steps: int = DEFAULT_DIFFUSION_STEPS, strict: bool = False) -> TextToImageOutput:
        """``num_images_per_prompt`` images per prompt in ``num_inference_steps`` DPM-Solver++ steps, guided
        (``guidance_scale`` > 1; None: the pipeline's default) against the null caption or ``negative_prompt``.
        ``callback_on_step_end(pipe, step, timestep, {"latents": x})`` runs after each step; the ``latents`` it
        returns replace the loop's, as in diffusers. Prompts are normalised and checked as ``TextToImage`` does
        (``strict``)."""
        prompts = known_prompts(self.prompt_world, check_prompts(prompt, num_images_per_prompt), strict)
        guidance_scale = self.default_guidance_scale if guidance_scale is None else guidance_scale
        check_guidance_scale(guidance_scale)
        check_int("num_inference_steps", num_inference_steps, 1)
        check_output_type(output_type)
        check_size(height, width, self.baseline.config.image_size)
        check_callback(callback_on_step_end)
        pieces = encode_prompts(self.caption_tokenizer, prompts, "prompt")
        negatives = negative_prompts(negative_prompt, len(prompts))
        if negatives is not None:
            negatives = encode_prompts(self.caption_tokenizer, known_prompts(self.prompt_world, negatives, strict),
                                       "negative_prompt")
        repeat = (lambda rows: [r for r in rows for _ in range(num_images_per_prompt)])
        all_prompts = repeat(prompts)
        generators = per_image_generators(generator, len(all_prompts))
        device = self.device
        ids = self.baseline.captions(repeat(pieces)).to(device)
        negative_ids = None if negatives is None else self.baseline.captions(repeat(negatives)).to(device)
        images = self.denoise(ids, num_inference_steps, guidance_scale, generators, negative_ids,
                              step_callback(self, callback_on_step_end))
        return TextToImageOutput(convert_images(images.float(), output_type), None, all_prompts)

    @torch.no_grad()
    def denoise(self, caption_ids: torch.Tensor, num_inference_steps: int, guidance_scale: float,
                generator: torch.Generator | list[torch.Generator] | None = None,
                negative_ids: torch.Tensor | None = None, callback: Callable | None = None) -> torch.Tensor:
        """The denoising loop: caption_ids (B, L) -> images (B, 3, S, S) in [0, 1]. Guidance pushes away from
        ``negative_ids`` (B, L), or from the null caption when None. ``callback(step, timestep, {"latents": x})``
        as in ``RefinerPipeline``."""
        model, c = self.baseline, self.baseline.config
        batch, device = caption_ids.shape[0], caption_ids.device
        scheduler = self.scheduler
        scheduler.set_timesteps(num_inference_steps, device=device)
        guided = guidance_scale != 1
        uncond = model.null_captions(batch).to(device) if negative_ids is None else negative_ids
        ids = torch.cat([caption_ids, uncond]) if guided else caption_ids
        states, keep = model.encode_text(ids)  # the captions do not change across steps: encode once
        x = randn_tensor((batch, 3, c.image_size, c.image_size), generator=generator, device=device,
                         dtype=states.dtype) * scheduler.init_noise_sigma
        for i, t in enumerate(self.progress_bar(scheduler.timesteps, desc="denoising", leave=False)):
            inputs = torch.cat([x, x]) if guided else x
            prediction = model.unet(inputs, t.repeat(len(inputs)), encoder_hidden_states=states,
                                    encoder_attention_mask=keep.to(states.dtype)).sample
            if guided:
                prediction = guide(*prediction.chunk(2), guidance_scale)  # (cond, uncond) halves
            x = scheduler.step(prediction, t, x, generator=generator).prev_sample
            if callback is not None:
                x = callback(i, t, {"latents": x})["latents"]
        return ((x + 1) / 2).clamp(0, 1)
