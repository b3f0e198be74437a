"""What every pipeline shares (``TextToImage`` here, ``HybridPipeline``, ``RefinerPipeline`` and
``DiffusionBaselinePipeline`` in ``hybrid``): the output type, a call's first checks, one generator per image,
PIL <-> tensor conversion, progress bars, and a folder's components with its index, ``pipeline.json``.

The shape is diffusers' ``DiffusionPipeline``: ``progress_bar`` / ``set_progress_bar_config(**kwargs)`` (tqdm
arguments), a subfolder per component, and one index file. Several pipelines may share one folder (the shipped
checkpoint holds all three), so saving adds a pipeline's components to the index instead of replacing it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from vq.pretrained import CheckpointError, check_int, write_text

PIPELINE_NAME = "pipeline.json"


@dataclass
class TextToImageOutput:
    """What every text-to-image pipeline returns."""

    images: list[Image.Image]
    ids: torch.Tensor | None  # (N, h, w) VQ codes, N = len(prompts) * num_images; None: no tokens (the baseline)
    prompts: list[str]  # the prompt of each image
    log_probs: torch.Tensor | None = None  # (N,) with sampler="beam": each image's guided log-probability

    def __repr__(self) -> str:  # a summary, not the ids tensor
        size = "x".join(map(str, self.images[0].size)) if self.images else "-"
        ids = "None" if self.ids is None else f"tensor{tuple(self.ids.shape)}"
        extra = "" if self.log_probs is None else f", log_probs=tensor{tuple(self.log_probs.shape)}"
        return (f"TextToImageOutput(images=[{len(self.images)} PIL images {size}], ids={ids}, "
                f"prompts={len(self.prompts)}{extra})")


# --- images -------------------------------------------------------------------------------------------------

# The one conversion between model pixels and 8-bit images, both ways, for every pipeline and evaluation.

def pixels_to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """(B, 3, S, S) in [0, 1] (clamped) -> (B, S, S, 3) uint8 on the CPU, rounded to the nearest grey level."""
    return (pixels.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def pixels_to_pil(pixels: torch.Tensor) -> list[Image.Image]:
    """(B, 3, S, S) in [0, 1] -> B RGB PIL images."""
    return [Image.fromarray(a) for a in pixels_to_uint8(pixels)]


def pil_to_pixels(images: list[Image.Image | np.ndarray], device=None) -> torch.Tensor:
    """PIL images or (S, S, 3) uint8 arrays of one size -> (B, 3, S, S) float32 in [0, 1] on ``device``."""
    arrays = [np.array(im.convert("RGB")) if isinstance(im, Image.Image) else im for im in images]
    return torch.stack([torch.from_numpy(a).permute(2, 0, 1) for a in arrays]).to(device).float() / 255


# --- a call's arguments -------------------------------------------------------------------------------------

def check_prompts(prompt, num_images: int) -> list[str]:
    """``prompt`` a string or a non-empty list of strings, ``num_images`` an integer >= 1 -> the prompts as a list
    (every pipeline's first check)."""
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, (list, tuple)) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError(f"prompt must be a string or a non-empty list of strings, got {prompt!r}")
    check_int("num_images", num_images, 1)
    return list(prompts)


def per_image_generators(generator, total: int) -> list[torch.Generator] | None:
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


# --- progress and files ---------------------------------------------------------------------------------------

class PipelineMixin:
    """Progress bars and saving, as diffusers' ``DiffusionPipeline`` has them."""

    def progress_bar(self, iterable: Iterable, **defaults):
        """``iterable`` in a tqdm bar: a loop's own ``defaults`` (its description), overridden by the settings of
        ``set_progress_bar_config``."""
        return tqdm(iterable, **{**defaults, **getattr(self, "_progress_bar_config", {})})

    def set_progress_bar_config(self, **kwargs) -> None:
        """tqdm arguments for every loop of the pipeline, e.g. ``disable=True``."""
        self._progress_bar_config = kwargs


def save_components(path: str | Path, components: dict[str, object], dtype: torch.dtype | None = None,
                    settings: dict | None = None) -> None:
    """Write each component into its subfolder (models' floating weights cast to ``dtype`` if given), then add
    them and ``settings`` to the folder's ``pipeline.json``, which keeps listing what the folder already held."""
    path = Path(path)
    for name, component in components.items():
        if isinstance(component, nn.Module):
            component.save_pretrained(path / name, dtype=dtype)
        else:  # the caption tokenizer has no weights to cast
            component.save_pretrained(path / name)
    index = read_pipeline_index(path) if (path / PIPELINE_NAME).is_file() else {}
    listed = list(index.get("components", []))
    index["components"] = listed + [name for name in components if name not in listed]
    index.update(settings or {})
    write_text(path / PIPELINE_NAME, json.dumps(index, indent=2))


def read_pipeline_index(path: str | Path) -> dict:
    """A folder's ``pipeline.json``: its components and the settings pipelines saved there."""
    file = Path(path) / PIPELINE_NAME
    try:
        index = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{file} is not valid JSON ({e})") from None
    if not isinstance(index, dict):
        raise CheckpointError(f"{file} must hold a JSON object, got {type(index).__name__}")
    return index


def load_component(path: Path, name: str, cls):
    """Component ``name`` of a pipeline folder, loaded by ``cls.from_pretrained``."""
    if not (path / name).is_dir():
        raise CheckpointError(f"checkpoint {str(path)!r} has no {name}/ folder (train it with 't2i train {name}')")
    return cls.from_pretrained(path / name)
