"""``TextToImage``: prompt -> caption pieces -> image codes (the decoder) -> pixels (the VQ decoder).

A checkpoint is a folder with one subfolder per component, as in diffusers:

    pipeline.json           the components the folder holds, and generation defaults (the best measured settings
                            of the checkpoint)
    vq/                     config.json + model.safetensors (VQModel)
    caption_tokenizer/      spiece.model + tokenizer_config.json (CaptionTokenizer)
    decoder/                config.json + model.safetensors (ARDecoder)
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from PIL import Image

from vq.model import VQModel
from vq.pretrained import CheckpointError, check_device, check_int, existing_folder

from .beam import beam_search
from .generate import decode_one_token, generate
from .generation_settings import GenerationSettings, check_generation_defaults
from .model import ARDecoder
from .pipeline_utils import (
    PIPELINE_NAME,
    PipelineMixin,
    TextToImageOutput,
    check_prompts,
    per_image_generators,
    pil_to_pixels,
    pixels_to_pil,
    read_pipeline_index,
    save_components,
)
from .sequence import caption_prefixes, null_prefixes
from .text_tokenizer import CaptionTokenizer

COMPONENTS = {"vq": VQModel, "caption_tokenizer": CaptionTokenizer, "decoder": ARDecoder}


class TextToImage(PipelineMixin):
    def __init__(self, vq: VQModel, caption_tokenizer: CaptionTokenizer, decoder: ARDecoder,
                 default_cfg_scale: float | None = None, generation_defaults: dict | None = None):
        c = decoder.config
        if (vq.config.vocab_size, vq.config.grid_size) != (c.codebook_size, c.grid_size):
            raise ValueError(f"the decoder writes {c.codebook_size} codes on a {c.grid_size}x{c.grid_size} grid "
                             f"but the VQ tokenizer has {vq.config.vocab_size} codes on a "
                             f"{vq.config.grid_size}x{vq.config.grid_size} grid")
        if caption_tokenizer.vocab_size != c.text_vocab_size:
            raise ValueError(f"the decoder reads {c.text_vocab_size} caption pieces but the caption tokenizer "
                             f"has {caption_tokenizer.vocab_size}")
        self.vq, self.caption_tokenizer, self.decoder = vq.eval(), caption_tokenizer, decoder.eval()
        defaults = dict(generation_defaults or {})
        if default_cfg_scale is not None:
            defaults["cfg_scale"] = default_cfg_scale
        self.generation_defaults = check_generation_defaults(defaults)
        self.decode_fn = decode_one_token  # replace with torch.compile(decode_one_token) to compile the step

    @property
    def default_cfg_scale(self) -> float:
        return self.generation_defaults["cfg_scale"]

    @default_cfg_scale.setter
    def default_cfg_scale(self, value: float) -> None:
        self.generation_defaults = check_generation_defaults({**self.generation_defaults, "cfg_scale": value})

    @property
    def device(self) -> torch.device:
        return self.decoder.embed_tokens.weight.device

    # --- files --------------------------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> None:
        save_components(path, {"vq": self.vq, "caption_tokenizer": self.caption_tokenizer, "decoder": self.decoder},
                        dtype, {"default_cfg_scale": self.default_cfg_scale,
                                "generation_defaults": self.generation_defaults})

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = torch.float32) -> "TextToImage":
        """Load a pipeline folder; weights stored in fp16 are cast to ``dtype`` (float32 by default)."""
        check_device(device)
        path = existing_folder(path)
        missing = [name for name in (PIPELINE_NAME, *COMPONENTS) if not (path / name).exists()]
        if missing:
            raise CheckpointError(f"checkpoint {str(path)!r} is missing {missing}; a pipeline folder holds "
                                  f"{[PIPELINE_NAME, *COMPONENTS]}")
        vq = VQModel.from_pretrained(path / "vq", device=device, dtype=dtype)
        tokenizer = CaptionTokenizer.from_pretrained(path / "caption_tokenizer")
        decoder = ARDecoder.from_pretrained(path / "decoder", device=device, dtype=dtype)
        settings = read_pipeline_index(path)
        try:
            defaults = dict(settings.get("generation_defaults", {}))
            if "default_cfg_scale" in settings:
                defaults["cfg_scale"] = float(settings["default_cfg_scale"])
            return cls(vq, tokenizer, decoder, generation_defaults=defaults)
        except ValueError as e:
            raise CheckpointError(f"checkpoint {str(path)!r}: components do not fit together: {e}") from None

    # --- generation ---------------------------------------------------------------------------------------
    def check_inputs(self, prompt, num_images: int) -> list[str]:
        return check_prompts(prompt, num_images)

    def _encode_prompts(self, prompts: list[str], what: str) -> list[list[int]]:
        out = []
        for p in prompts:
            try:
                out.append(self.caption_tokenizer.encode(p))
            except ValueError as e:
                raise ValueError(f"{what}: {e}") from None
        return out

    def _image_ids(self, image) -> torch.Tensor:
        """A PIL image or a (3, S, S) / (1, 3, S, S) tensor in [0, 1] -> VQ ids (h, w)."""
        s = self.vq.config.image_size
        if isinstance(image, Image.Image):
            if image.size != (s, s):
                raise ValueError(f"image must be {s}x{s} pixels (the tokenizer's size), got {image.size[0]}x"
                                 f"{image.size[1]}")
            image = pil_to_pixels([image])[0]
        if not isinstance(image, torch.Tensor):
            raise ValueError(f"image must be a PIL image or a tensor, got {type(image).__name__}")
        if image.ndim == 3:
            image = image[None]
        if image.shape[0] != 1:
            raise ValueError(f"image must be one image, got a batch of {image.shape[0]}")
        return self.vq.encode(image.to(self.device, torch.float32))[0]

    @torch.no_grad()
    def _run(self, prompt, settings: GenerationSettings, fixed: torch.Tensor | None = None) -> TextToImageOutput:
        """Generate for ``prompt`` with ``settings``; ``fixed`` (1, image_tokens) holds codes to keep (-1 where the
        model chooses) when editing."""
        num_images, negative_prompt = settings.num_images, settings.negative_prompt
        prompts = self.check_inputs(prompt, num_images)
        sampling = settings.sampling(self.generation_defaults)  # checks its arguments
        pieces = self._encode_prompts(prompts, "prompt")  # every prompt checked before any work
        negatives = None
        if negative_prompt is not None:
            negatives = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else negative_prompt
            if not isinstance(negatives, (list, tuple)) or len(negatives) != len(prompts):
                raise ValueError(f"negative_prompt must be a string or a list with one per prompt ({len(prompts)}), "
                                 f"got {negative_prompt!r}")
            negatives = self._encode_prompts(list(negatives), "negative_prompt")
        all_prompts = [p for p in prompts for _ in range(num_images)]
        generators = per_image_generators(settings.generator, len(all_prompts))
        c = self.decoder.config
        repeat = (lambda rows: [r for r in rows for _ in range(num_images)])
        prefixes = caption_prefixes(c, repeat(pieces)).to(self.device)
        uncond = None
        if sampling.guided:
            uncond = (null_prefixes(c, len(all_prompts)) if negatives is None
                      else caption_prefixes(c, repeat(negatives))).to(self.device)
        progress_bar = functools.partial(self.progress_bar, leave=False)
        log_probs = None
        if sampling.sampler == "beam":
            if fixed is not None:
                raise ValueError("sampler='beam' does not edit images; use 'greedy' or 'sample'")
            codes, log_probs = beam_search(self.decoder, prefixes, sampling, uncond, progress_bar, self.decode_fn)
        else:
            if fixed is not None:
                fixed = fixed.to(self.device).expand(len(all_prompts), -1)
            codes = generate(self.decoder, prefixes, sampling, generators, uncond, fixed, progress_bar,
                             self.decode_fn)
        ids = codes.view(-1, c.grid_size, c.grid_size)
        pixels = self.vq.decode_ids(ids)
        return TextToImageOutput(pixels_to_pil(pixels), ids.cpu(), all_prompts,
                                 None if log_probs is None else log_probs.cpu())

    def __call__(self, prompt: str | list[str], num_images: int = 1, sampler: str | None = None,
                 temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                 cfg_scale: float | None = None, cfg_schedule: str = "constant", cfg_interval: int | None = None,
                 beam_width: int = 1, negative_prompt: str | list[str] | None = None,
                 generator: torch.Generator | list[torch.Generator] | None = None) -> TextToImageOutput:
        """Generate ``num_images`` images for each prompt.

        ``sampler``: "greedy" takes the most likely code at every step; "sample" draws from the
        (temperature-scaled, top-k / top-p filtered) distribution with one generator per image; "beam" keeps the
        ``beam_width`` best sequences by guided log-probability. ``cfg_scale`` > 1 turns on classifier-free
        guidance (1 turns it off), constant or ramped linearly from 1
        (``cfg_schedule``), for the first ``cfg_interval`` image tokens (None: all), against the null caption or
        ``negative_prompt``. ``sampler``, ``temperature``, ``top_k``, ``top_p`` and ``cfg_scale`` left at None
        take the checkpoint's defaults (``generation_defaults``, from pipeline.json: its best measured settings);
        ``top_k=0`` and ``top_p=1.0`` turn those filters off.
        """
        return self._run(prompt, GenerationSettings(
            num_images=num_images, sampler=sampler, temperature=temperature, top_k=top_k, top_p=top_p,
            cfg_scale=cfg_scale, cfg_schedule=cfg_schedule, cfg_interval=cfg_interval, beam_width=beam_width,
            negative_prompt=negative_prompt, generator=generator))

    def complete(self, image, keep_rows: int, prompt: str, **kwargs) -> TextToImageOutput:
        """Keep the top ``keep_rows`` token rows of ``image`` and generate the rest for ``prompt``.

        ``kwargs`` are those of ``__call__`` (any sampler but beam)."""
        settings = GenerationSettings.from_kwargs(kwargs)
        ids = self._image_ids(image)
        h, w = ids.shape
        check_int("keep_rows", keep_rows, 0, h, note=" (token rows)")
        fixed = torch.full((h, w), -1, dtype=torch.long, device=ids.device)
        fixed[:keep_rows] = ids[:keep_rows]
        return self._edit(prompt, fixed, settings)

    def regenerate(self, image, box: tuple[int, int, int, int], prompt: str, **kwargs) -> TextToImageOutput:
        """Regenerate the tokens whose cells overlap ``box`` = (x0, y0, x1, y1) in pixels (x1, y1 exclusive);
        every other token of ``image`` is kept. ``kwargs`` are those of ``__call__`` (any sampler but beam)."""
        settings = GenerationSettings.from_kwargs(kwargs)
        ids = self._image_ids(image)
        s, f = self.vq.config.image_size, self.vq.config.downsample_factor
        if (not isinstance(box, (tuple, list)) or len(box) != 4 or not all(isinstance(v, int) for v in box)
                or not (0 <= box[0] < box[2] <= s and 0 <= box[1] < box[3] <= s)):
            raise ValueError(f"box must be (x0, y0, x1, y1) integers with 0 <= x0 < x1 <= {s} and "
                             f"0 <= y0 < y1 <= {s}, got {box!r}")
        x0, y0, x1, y1 = box
        cells = torch.arange(ids.shape[0]) * f  # the first pixel of each token row / column
        rows = (cells < y1) & (cells + f > y0)
        cols = (cells < x1) & (cells + f > x0)
        inside = (rows[:, None] & cols[None, :]).to(ids.device)
        fixed = torch.where(inside, torch.full_like(ids, -1), ids)
        return self._edit(prompt, fixed, settings)

    def _edit(self, prompt: str, fixed: torch.Tensor, settings: GenerationSettings) -> TextToImageOutput:
        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be a string when editing an image, got {prompt!r}")
        return self._run(prompt, settings, fixed=fixed.flatten()[None])
