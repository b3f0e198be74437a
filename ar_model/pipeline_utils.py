"""What every pipeline shares (``TextToImage`` here, ``HybridPipeline``, ``RefinerPipeline`` and
``DiffusionBaselinePipeline`` in ``hybrid``): the output type and its ``output_type`` conversions, a call's first
checks, one generator per image, PIL <-> tensor conversion, progress bars, step callbacks, devices and dtypes, and
a folder's components with its index, ``pipeline.json``.

The shape is diffusers' ``DiffusionPipeline``: ``components``, ``config``, ``to(device_or_dtype)``, ``device``,
``dtype``, ``progress_bar`` / ``set_progress_bar_config(**kwargs)`` (tqdm arguments), ``callback_on_step_end(pipe,
step, timestep, callback_kwargs)``, a subfolder per component, and one index file. Several pipelines may share one
folder (the shipped checkpoint holds all three), so saving adds a pipeline's components to the index instead of
replacing it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from vq.pretrained import CheckpointError, check_device, check_int, write_text

PIPELINE_NAME = "pipeline.json"


OUTPUT_TYPES = ("pil", "np", "pt")


@dataclass
class TextToImageOutput:
    """What every text-to-image pipeline returns. ``images`` as the call's ``output_type`` asked: "pil" a list of
    PIL images, "np" a float32 array (N, H, W, 3) in [0, 1], "pt" a float32 tensor (N, 3, H, W) in [0, 1]
    (diffusers' conventions)."""

    images: list[Image.Image] | np.ndarray | torch.Tensor
    ids: torch.Tensor | None  # (N, h, w) VQ codes, N = len(prompts) * num_images_per_prompt; None: the baseline
    prompts: list[str]  # the prompt of each image
    log_probs: torch.Tensor | None = None  # (N,) with sampler="beam": each image's guided log-probability

    def __repr__(self) -> str:  # a summary, not the ids tensor
        if isinstance(self.images, list):
            size = "x".join(map(str, self.images[0].size)) if self.images else "-"
            images = f"[{len(self.images)} PIL images {size}]"
        else:
            kind = "array" if isinstance(self.images, np.ndarray) else "tensor"
            images = f"{kind}{tuple(self.images.shape)}"
        ids = "None" if self.ids is None else f"tensor{tuple(self.ids.shape)}"
        extra = "" if self.log_probs is None else f", log_probs=tensor{tuple(self.log_probs.shape)}"
        return f"TextToImageOutput(images={images}, ids={ids}, prompts={len(self.prompts)}{extra})"


def check_output_type(output_type) -> None:
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"output_type must be one of {list(OUTPUT_TYPES)}, got {output_type!r}")


def convert_images(pixels: torch.Tensor, output_type: str):
    """(B, 3, S, S) in [0, 1] -> the images of ``output_type``. "np" and "pt" are the 8-bit images' values (the
    same pixels a PIL image holds), so every output type shows one picture."""
    check_output_type(output_type)
    if output_type == "pil":
        return pixels_to_pil(pixels)
    as_uint8 = pixels_to_uint8(pixels)
    if output_type == "np":
        return as_uint8.astype(np.float32) / 255
    return torch.from_numpy(as_uint8).permute(0, 3, 1, 2).float() / 255


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


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of a model's floating weights (its inputs' dtype)."""
    return next(p for p in model.parameters() if p.is_floating_point()).dtype


# --- a call's arguments -------------------------------------------------------------------------------------

def check_prompts(prompt, num_images_per_prompt: int) -> list[str]:
    """``prompt`` a string or a non-empty list of strings, ``num_images_per_prompt`` an integer >= 1 -> the prompts
    as a list (every pipeline's first check)."""
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, (list, tuple)) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError(f"prompt must be a string or a non-empty list of strings, got {prompt!r}")
    check_int("num_images_per_prompt", num_images_per_prompt, 1)
    return list(prompts)


def encode_prompts(tokenizer, prompts: list[str], what: str) -> list[list[int]]:
    """Each prompt's caption pieces; a prompt the tokenizer refuses is an error naming the argument (``what``)."""
    try:
        return [tokenizer.encode(p) for p in prompts]
    except ValueError as e:
        raise ValueError(f"{what}: {e}") from None


def check_size(height, width, image_size: int) -> None:
    """``height`` / ``width`` (None: the checkpoint's) must be the size the checkpoint makes: its models work at
    one resolution."""
    for name, value in (("height", height), ("width", width)):
        if value is not None and value != image_size:
            raise ValueError(f"{name} must be {image_size} (this checkpoint makes {image_size}x{image_size} images) "
                             f"or None, got {value!r}")


def negative_prompts(negative_prompt, count: int) -> list[str] | None:
    """``negative_prompt``: None, one string for every prompt, or a list with one per prompt."""
    if negative_prompt is None:
        return None
    negatives = [negative_prompt] * count if isinstance(negative_prompt, str) else negative_prompt
    if (not isinstance(negatives, (list, tuple)) or len(negatives) != count
            or not all(isinstance(n, str) for n in negatives)):
        raise ValueError(f"negative_prompt must be a string or a list of strings with one per prompt ({count}), "
                         f"got {negative_prompt!r}")
    return list(negatives)


def check_callback(callback_on_step_end) -> None:
    if callback_on_step_end is not None and not callable(callback_on_step_end):
        raise ValueError(f"callback_on_step_end must be callable as (pipe, step, timestep, callback_kwargs) or "
                         f"None, got {type(callback_on_step_end).__name__}")


def step_callback(pipe, callback_on_step_end, offset: int = 0) -> Callable | None:
    """diffusers' ``callback_on_step_end(pipe, step, timestep, callback_kwargs)`` as the loops' ``callback(step,
    timestep, tensors) -> tensors``: the loops pass their state (``{"ids": ...}``, ``{"latents": ...}``) and take
    back what the callback returns (a dict; a missing key keeps the loop's value). ``offset`` numbers the steps of
    a second stage after the first's."""
    if callback_on_step_end is None:
        return None

    def callback(step: int, timestep, tensors: dict) -> dict:
        returned = callback_on_step_end(pipe, offset + step, timestep, dict(tensors))
        if returned is None:
            return tensors
        if not isinstance(returned, dict):
            raise ValueError(f"callback_on_step_end must return a dict (its callback_kwargs) or None, got "
                             f"{type(returned).__name__}")
        return {**tensors, **{k: v for k, v in returned.items() if k in tensors}}
    return callback


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

def parse_to_arguments(args, device, dtype) -> tuple:
    """``to(device)``, ``to(dtype)``, ``to(device, dtype)`` or keywords, as diffusers' ``DiffusionPipeline.to``."""
    for arg in args:
        if isinstance(arg, torch.dtype) and dtype is None:
            dtype = arg
        elif isinstance(arg, (str, torch.device)) and device is None:
            device = arg
        else:
            raise ValueError(f"to() takes a device (e.g. 'cpu', 'cuda'), a torch.dtype, or both; got {arg!r}")
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating torch.dtype such as torch.float32, got {dtype!r}")
    check_device(device)
    return device, dtype


class PipelineMixin:
    """What diffusers' ``DiffusionPipeline`` offers besides the call: ``components`` (each subclass names its own in
    ``component_names``), ``config``, ``to``, ``device``, ``dtype``, progress bars."""

    component_names: tuple[str, ...] = ()

    @property
    def components(self) -> dict[str, object]:
        """The pipeline's parts by name (models, tokenizer, scheduler), e.g. to build another pipeline from them."""
        return {name: getattr(self, name) for name in self.component_names}

    @property
    def config(self) -> MappingProxyType:
        """A read-only view: the class, each component's class, and the pipeline's settings."""
        parts = {name: type(c).__name__ for name, c in self.components.items()}
        return MappingProxyType({"_class_name": type(self).__name__, **parts, **self._config_settings()})

    def _config_settings(self) -> dict:
        return {}

    def _modules(self) -> list[nn.Module]:
        return [c for c in self.components.values() if isinstance(c, nn.Module)]

    def to(self, *args, device: str | torch.device | None = None, dtype: torch.dtype | None = None):
        """Move every model to ``device`` and / or cast its weights to ``dtype``; returns the pipeline."""
        device, dtype = parse_to_arguments(args, device, dtype)
        for module in self._modules():
            module.to(device=device, dtype=dtype)
        return self

    @property
    def device(self) -> torch.device:
        return model_device(self._modules()[0])

    @property
    def dtype(self) -> torch.dtype:
        return model_dtype(self._modules()[0])

    def progress_bar(self, iterable: Iterable, **defaults):
        """``iterable`` in a tqdm bar: a loop's own ``defaults`` (its description), overridden by the settings of
        ``set_progress_bar_config``."""
        return tqdm(iterable, **{**defaults, **getattr(self, "_progress_bar_config", {})})

    def set_progress_bar_config(self, **kwargs) -> None:
        """tqdm arguments for every loop of the pipeline, e.g. ``disable=True``."""
        self._progress_bar_config = kwargs


def save_components(path: str | Path, components: dict[str, object], dtype: torch.dtype | None = None,
                    settings: dict | None = None, drop: tuple[str, ...] = ()) -> None:
    """Write each component into its subfolder (models' floating weights cast to ``dtype`` if given), then add
    them and ``settings`` to the folder's ``pipeline.json``, which keeps listing what the folder already held
    (less the keys in ``drop``)."""
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
    for key in drop:
        index.pop(key, None)
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
