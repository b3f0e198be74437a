"""``TextToImage``: prompt -> caption pieces -> image codes (the decoder) -> pixels (the VQ decoder).

A checkpoint is a folder with one subfolder per component, as in diffusers:

    pipeline.json           component names and generation defaults
    vq/                     config.json + model.safetensors (VQModel)
    caption_tokenizer/      spiece.model + tokenizer_config.json (CaptionTokenizer)
    decoder/                config.json + model.safetensors (ARDecoder)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from vq.atomic import write_text
from vq.model import VQModel
from vq.serialization import CheckpointError

from .generate import decode_one_token, generate
from .model import ARDecoder
from .sampling import SamplingConfig
from .sequence import caption_prefixes, null_prefixes
from .text_tokenizer import CaptionTokenizer

PIPELINE_NAME = "pipeline.json"
COMPONENTS = {"vq": VQModel, "caption_tokenizer": CaptionTokenizer, "decoder": ARDecoder}
DEFAULT_CFG_SCALE = 3.0


@dataclass
class TextToImageOutput:
    images: list[Image.Image]
    ids: torch.Tensor  # (N, h, w) VQ codes, N = len(prompts) * num_images
    prompts: list[str]  # the prompt of each image


def _generators(generator, total: int) -> list[torch.Generator] | None:
    """None, one generator (split into one per image), or a list with one per image."""
    if generator is None:
        return None
    if isinstance(generator, torch.Generator):
        seeds = torch.randint(0, 2 ** 62, (total,), generator=generator, device=generator.device).tolist()
        return [torch.Generator(generator.device).manual_seed(s) for s in seeds]
    if isinstance(generator, (list, tuple)) and all(isinstance(g, torch.Generator) for g in generator):
        if len(generator) != total:
            raise ValueError(f"generator: a list must hold one torch.Generator per image ({total}), "
                             f"got {len(generator)}")
        return list(generator)
    raise ValueError(f"generator must be None, a torch.Generator or a list of them, got {type(generator).__name__}")


class TextToImage:
    def __init__(self, vq: VQModel, caption_tokenizer: CaptionTokenizer, decoder: ARDecoder,
                 default_cfg_scale: float = DEFAULT_CFG_SCALE):
        c = decoder.config
        if (vq.config.vocab_size, vq.config.grid_size) != (c.codebook_size, c.grid_size):
            raise ValueError(f"the decoder writes {c.codebook_size} codes on a {c.grid_size}x{c.grid_size} grid "
                             f"but the VQ tokenizer has {vq.config.vocab_size} codes on a "
                             f"{vq.config.grid_size}x{vq.config.grid_size} grid")
        if caption_tokenizer.vocab_size != c.text_vocab_size:
            raise ValueError(f"the decoder reads {c.text_vocab_size} caption pieces but the caption tokenizer "
                             f"has {caption_tokenizer.vocab_size}")
        self.vq, self.caption_tokenizer, self.decoder = vq.eval(), caption_tokenizer, decoder.eval()
        self.default_cfg_scale = default_cfg_scale
        self.progress_bar_config: dict = {}
        self.decode_fn = decode_one_token  # replace with torch.compile(decode_one_token) to compile the step

    @property
    def device(self) -> torch.device:
        return self.decoder.embed_tokens.weight.device

    def set_progress_bar_config(self, disable: bool = False) -> None:
        self.progress_bar_config = {"disable": disable}

    # --- files --------------------------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> None:
        path = Path(path)
        self.vq.save_pretrained(path / "vq", dtype=dtype)
        self.caption_tokenizer.save_pretrained(path / "caption_tokenizer")
        self.decoder.save_pretrained(path / "decoder", dtype=dtype)
        write_text(path / PIPELINE_NAME, json.dumps({"components": list(COMPONENTS),
                                                     "default_cfg_scale": self.default_cfg_scale}, indent=2))

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = torch.float32) -> "TextToImage":
        """Load a pipeline folder; weights stored in fp16 are cast to ``dtype`` (float32 by default)."""
        path = Path(path)
        if not path.is_dir():
            raise CheckpointError(f"checkpoint folder {str(path)!r} does not exist")
        missing = [name for name in (PIPELINE_NAME, *COMPONENTS) if not (path / name).exists()]
        if missing:
            raise CheckpointError(f"checkpoint {str(path)!r} is missing {missing}; a pipeline folder holds "
                                  f"{[PIPELINE_NAME, *COMPONENTS]}")
        vq = VQModel.from_pretrained(path / "vq", device=device, dtype=dtype)
        tokenizer = CaptionTokenizer.from_pretrained(path / "caption_tokenizer")
        decoder = ARDecoder.from_pretrained(path / "decoder", device=device, dtype=dtype)
        try:
            settings = json.loads((path / PIPELINE_NAME).read_text())
            return cls(vq, tokenizer, decoder, float(settings.get("default_cfg_scale", DEFAULT_CFG_SCALE)))
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{path / PIPELINE_NAME} is not valid JSON ({e})") from None
        except ValueError as e:
            raise CheckpointError(f"checkpoint {str(path)!r}: components do not fit together: {e}") from None

    # --- generation ---------------------------------------------------------------------------------------
    def check_inputs(self, prompt, num_images: int) -> list[str]:
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, (list, tuple)) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError(f"prompt must be a string or a non-empty list of strings, got {prompt!r}")
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
            raise ValueError(f"num_images must be an integer >= 1, got {num_images!r}")
        return list(prompts)

    @torch.no_grad()
    def __call__(self, prompt: str | list[str], num_images: int = 1, sampler: str = "greedy",
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 cfg_scale: float | None = None,
                 generator: torch.Generator | list[torch.Generator] | None = None) -> TextToImageOutput:
        """Generate ``num_images`` images for each prompt.

        ``sampler="greedy"`` takes the most likely code at every step; ``"sample"`` draws from the
        (temperature-scaled, top-k / top-p filtered) distribution with one generator per image.
        ``cfg_scale`` > 1 turns on classifier-free guidance (1 turns it off; None: the checkpoint's default).
        """
        prompts = self.check_inputs(prompt, num_images)
        cfg_scale = self.default_cfg_scale if cfg_scale is None else cfg_scale
        sampling = SamplingConfig(sampler, temperature, top_k, top_p, cfg_scale)  # checks its arguments
        pieces = [self.caption_tokenizer.encode(p) for p in prompts]  # checks every prompt before any work
        all_prompts = [p for p in prompts for _ in range(num_images)]
        generators = _generators(generator, len(all_prompts))
        c = self.decoder.config
        prefixes = caption_prefixes(c, [ids for ids in pieces for _ in range(num_images)]).to(self.device)
        uncond = null_prefixes(c, len(all_prompts)).to(self.device) if sampling.guided else None
        codes = generate(self.decoder, prefixes, sampling, generators, uncond,
                         progress=not self.progress_bar_config.get("disable", False), decode_fn=self.decode_fn)
        ids = codes.view(-1, c.grid_size, c.grid_size)
        pixels = self.vq.decode_ids(ids)
        arrays = (pixels * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return TextToImageOutput([Image.fromarray(a) for a in arrays], ids.cpu(), all_prompts)
