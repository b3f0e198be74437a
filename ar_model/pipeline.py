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
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from vq.model import VQModel
from vq.pretrained import CheckpointError, check_int, existing_folder

from .beam import beam_search
from .generate import decode_one_token, generate
from .generation_settings import GenerationSettings, check_generation_defaults
from .model import ARDecoder
from .prompt_world import PromptWorld, known_prompts
from .pipeline_utils import (
    PIPELINE_NAME,
    PipelineMixin,
    TextToImageOutput,
    check_callback,
    check_output_type,
    check_prompts,
    check_size,
    convert_images,
    encode_prompts,
    model_dtype,
    negative_prompts,
    parse_to_arguments,
    per_image_generators,
    pil_to_pixels,
    read_pipeline_index,
    save_components,
    step_callback,
)
from .sampling import BEAM_SAMPLERS
from .sequence import caption_prefixes, null_prefixes
from .text_tokenizer import CaptionTokenizer

COMPONENTS = {"vq": VQModel, "caption_tokenizer": CaptionTokenizer, "decoder": ARDecoder}
# pipeline.json keys of releases before the diffusers names: read, and dropped when the folder is saved again.
LEGACY_KEYS = ("default_cfg_scale",)


def read_generation_defaults(index: dict) -> dict:
    """pipeline.json's ``generation_defaults``; a release before the diffusers names said ``cfg_scale`` (there
    and as a top-level ``default_cfg_scale``)."""
    defaults = dict(index.get("generation_defaults", {}))
    if "cfg_scale" in defaults:
        defaults.setdefault("guidance_scale", defaults.pop("cfg_scale"))
    if "default_cfg_scale" in index:
        defaults.setdefault("guidance_scale", float(index["default_cfg_scale"]))
    return defaults


class TextToImage(PipelineMixin):
    def __init__(self, vq: VQModel, caption_tokenizer: CaptionTokenizer, decoder: ARDecoder,
                 default_guidance_scale: float | None = None, generation_defaults: dict | None = None,
                 prompt_world: PromptWorld | None = None):
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
        if default_guidance_scale is not None:
            defaults["guidance_scale"] = default_guidance_scale
        self.generation_defaults = check_generation_defaults(defaults)
        self.prompt_world = prompt_world  # the training captions' words (world.json); None: no check
        self.decode_fn = decode_one_token  # replace with torch.compile(decode_one_token) to compile the step

    @property
    def default_guidance_scale(self) -> float:
        return self.generation_defaults["guidance_scale"]

    @default_guidance_scale.setter
    def default_guidance_scale(self, value: float) -> None:
        self.generation_defaults = check_generation_defaults({**self.generation_defaults, "guidance_scale": value})

    component_names = ("vq", "caption_tokenizer", "decoder")

    def _modules(self):  # the decoder first: device and dtype are its
        return [self.decoder, self.vq]

    def _config_settings(self) -> dict:
        return {"generation_defaults": dict(self.generation_defaults)}

    # --- files --------------------------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> None:
        save_components(path, {"vq": self.vq, "caption_tokenizer": self.caption_tokenizer, "decoder": self.decoder},
                        dtype, {"generation_defaults": self.generation_defaults}, drop=LEGACY_KEYS)
        if self.prompt_world is not None:
            self.prompt_world.save_pretrained(path)

    @classmethod
    def from_pretrained(cls, path: str | Path, torch_dtype: torch.dtype | None = torch.float32,
                        device: str | torch.device | None = None) -> "TextToImage":
        """Load a pipeline folder (a local one: nothing is downloaded); weights stored in fp16 are cast to
        ``torch_dtype`` (float32 by default), on ``device``."""
        _, dtype = parse_to_arguments((), device, torch_dtype)
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
            return cls(vq, tokenizer, decoder, generation_defaults=read_generation_defaults(settings),
                       prompt_world=PromptWorld.from_pretrained(path))
        except ValueError as e:
            raise CheckpointError(f"checkpoint {str(path)!r}: components do not fit together: {e}") from None

    # --- generation ---------------------------------------------------------------------------------------
    def known_prompts(self, prompts: list[str], strict: bool = False) -> list[str]:
        """``prompts`` normalised as the training captions were written, each checked against them (a warning per
        unknown prompt, or with ``strict`` an error); unchanged when the checkpoint records no world."""
        return known_prompts(self.prompt_world, prompts, strict)

    def check_inputs(self, prompt, num_images_per_prompt: int) -> list[str]:
        return check_prompts(prompt, num_images_per_prompt)

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
        return self.vq.encode(image.to(self.device, model_dtype(self.vq)))[0]

    @torch.no_grad()
    def _run(self, prompt, settings: GenerationSettings, fixed: torch.Tensor | None = None) -> TextToImageOutput:
        """Generate for ``prompt`` with ``settings``; ``fixed`` (1, image_tokens) holds codes to keep (-1 where the
        model chooses) when editing."""
        codes, log_probs, prompts = self.generate_codes(prompt, settings, fixed)
        ids = codes.view(-1, self.decoder.config.grid_size, self.decoder.config.grid_size)
        pixels = self.vq.decode_ids(ids)
        return TextToImageOutput(convert_images(pixels, settings.output_type), ids.cpu(), prompts,
                                 None if log_probs is None else log_probs.cpu())

    @torch.no_grad()
    def generate_codes(self, prompt, settings: GenerationSettings, fixed: torch.Tensor | None = None,
                       step_offset: int = 0, pipe=None) -> tuple[torch.Tensor, torch.Tensor | None, list[str]]:
        """The token stage alone: (codes (N, image_tokens), beam log-probabilities or None, each image's prompt).
        Every argument is checked before any work. ``pipe`` and ``step_offset``: what a pipeline that runs this
        stage first passes its callback."""
        num_images = settings.num_images_per_prompt
        prompts = self.known_prompts(self.check_inputs(prompt, num_images), settings.strict)
        check_output_type(settings.output_type)
        check_size(settings.height, settings.width, self.vq.config.image_size)
        check_callback(settings.callback_on_step_end)
        steps = settings.num_inference_steps
        if steps is not None and steps != self.decoder.config.image_tokens:
            raise ValueError(f"num_inference_steps must be {self.decoder.config.image_tokens} (one step per image "
                             f"token of this checkpoint) or None, got {steps!r}")
        sampling = settings.sampling(self.generation_defaults)  # checks its arguments
        pieces = encode_prompts(self.caption_tokenizer, prompts, "prompt")
        negatives = negative_prompts(settings.negative_prompt, len(prompts))
        if negatives is not None:
            negatives = encode_prompts(self.caption_tokenizer, self.known_prompts(negatives, settings.strict),
                                       "negative_prompt")
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
        callback = step_callback(self if pipe is None else pipe, settings.callback_on_step_end, step_offset)
        log_probs = None
        if sampling.sampler in BEAM_SAMPLERS:
            if fixed is not None:
                raise ValueError(f"sampler={sampling.sampler!r} does not edit images; use 'greedy' or 'sample'")
            codes, log_probs = beam_search(self.decoder, prefixes, sampling, uncond, progress_bar, self.decode_fn,
                                           callback, generators)
        else:
            if fixed is not None:
                fixed = fixed.to(self.device).expand(len(all_prompts), -1)
            codes = generate(self.decoder, prefixes, sampling, generators, uncond, fixed, progress_bar,
                             self.decode_fn, callback)
        return codes, log_probs, all_prompts

    def __call__(self, prompt: str | list[str], negative_prompt: str | list[str] | None = None,
                 num_images_per_prompt: int = 1, guidance_scale: float | None = None,
                 generator: torch.Generator | list[torch.Generator] | None = None, output_type: str = "pil",
                 callback_on_step_end: Callable | None = None, height: int | None = None, width: int | None = None,
                 sampler: str | None = None, temperature: float | None = None, top_k: int | None = None,
                 top_p: float | None = None, guidance_schedule: str = "constant", guidance_interval: int | None = None,
                 beam_width: int | None = None, num_inference_steps: int | None = None,
                 strict: bool = False) -> TextToImageOutput:
        """Generate ``num_images_per_prompt`` images for each prompt, with diffusers' argument names.

        ``guidance_scale`` > 1 turns on classifier-free guidance (1 turns it off), against the null caption or
        ``negative_prompt``, constant or ramped linearly (``guidance_schedule``: "linear" rises from 1 at the first
        image token, "linear_decay" falls to 1 at the last), for the first
        ``guidance_interval`` image tokens (None: all). ``sampler``: "greedy" takes the most likely code at every
        step; "sample" draws from the (temperature-scaled, top-k / top-p filtered) distribution with one generator
        per image; "beam" keeps the ``beam_width`` best sequences by guided log-probability; "beam_sample" is beam
        search whose extensions are drawn from the filtered distribution with each image's generator (transformers'
        ``do_sample=True`` with ``num_beams``), so images differ by seed. ``sampler``,
        ``temperature``, ``top_k``, ``top_p``, ``guidance_scale`` and ``beam_width`` left at None take the
        checkpoint's defaults (``generation_defaults``, from pipeline.json: its best measured settings); ``top_k=0``
        and ``top_p=1.0`` turn those filters off. ``output_type``: "pil", "np" or "pt". ``callback_on_step_end(pipe,
        step, timestep, callback_kwargs)`` runs after each image token (``step`` = ``timestep`` = its index;
        ``callback_kwargs`` holds ``ids``, the codes so far, (N, step + 1), of the best beam with a beam sampler).
        ``height`` / ``width`` may only be the checkpoint's size, and ``num_inference_steps`` only its number of image tokens (one decoder
        step each): a decoder has no other. Prompts are normalised as the checkpoint's training captions were
        written (``prompt_world``: "the word cat" reads "the word CAT"); one with a word those captions never had
        gives an ``UnknownPromptWarning`` naming it, or with ``strict=True`` a ValueError.
        """
        return self._run(prompt, GenerationSettings(
            negative_prompt=negative_prompt, num_images_per_prompt=num_images_per_prompt,
            guidance_scale=guidance_scale, generator=generator, output_type=output_type,
            callback_on_step_end=callback_on_step_end, height=height, width=width, sampler=sampler,
            temperature=temperature, top_k=top_k, top_p=top_p, guidance_schedule=guidance_schedule,
            guidance_interval=guidance_interval, beam_width=beam_width, num_inference_steps=num_inference_steps,
            strict=strict))

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
