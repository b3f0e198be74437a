"""What every model of the project needs to be saved and loaded: atomic file writes, the JSON config base with
the argument checks that configs and pipelines share (``check_int``, ``check_number``), and
``save_pretrained`` / ``from_pretrained`` (``config.json`` + ``model.safetensors``).

Writes are atomic (a temporary file beside the target, fsynced, then renamed over it), so a reader never sees a
half-written file and a killed write leaves no file under the target name. Loading is strict and each failure
names the folder, the file and what was wrong: a missing folder or file, a config with unknown keys, a truncated
weights file, or weights that do not fit the config.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, fields
from pathlib import Path
from typing import Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it is fsynced and renamed to ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp (and writers that recreate the file) leave 0600; make an ordinary file
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def _bounds(low, high, low_open: bool) -> str:
    if high is None:
        return f"{'>' if low_open else '>='} {low}"
    return f"in {'(' if low_open else '['}{low}, {high}]"


def _check(name: str, value, kinds: tuple[type, ...], what: str, low, high, low_open: bool, optional: bool,
           note: str, allowed: str | None) -> None:
    if optional and value is None:
        return
    fits = not isinstance(value, bool) and isinstance(value, kinds)  # bool is an int to Python, never a count here
    if fits and low is not None:
        fits = value > low if low_open else value >= low  # False for NaN
    if fits and high is not None:
        fits = value <= high
    if not fits:
        allowed = allowed or f"{'None or ' if optional else ''}{what} {_bounds(low, high, low_open)}{note}"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def check_int(name: str, value, low: int | None = None, high: int | None = None, *, optional: bool = False,
              note: str = "", allowed: str | None = None) -> None:
    """Raise ``ValueError("{name} must be an integer in [low, high]{note}, got {value!r}")`` (">= low" without
    ``high``; "None or ..." when ``optional``) unless ``value`` is such an integer; ``allowed`` replaces the
    description. A bool is refused."""
    _check(name, value, (int,), "an integer", low, high, False, optional, note, allowed)


def check_number(name: str, value, low: float | None = None, high: float | None = None, *, low_open: bool = False,
                 optional: bool = False, note: str = "", allowed: str | None = None) -> None:
    """As ``check_int`` for an int or float ("a number ..."); ``low_open`` excludes ``low`` itself. NaN and bools
    are refused."""
    _check(name, value, (int, float), "a number", low, high, low_open, optional, note, allowed)


def require_positive_ints(config, names: tuple[str, ...]) -> None:
    """Raise a ValueError naming the first of ``names`` that is not a positive integer on ``config``."""
    for name in names:
        check_int(name, getattr(config, name), 1, allowed="a positive integer")


def dataclass_from_dict(cls, d: dict):
    """``cls(**d)``, but an unknown key is an error that names it and the allowed keys."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; allowed: {sorted(known)}")
    return cls(**d)


class JSONConfig:
    """``to_dict`` / ``from_dict`` for the frozen dataclass configs that are saved as JSON."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        return dataclass_from_dict(cls, d)


CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be loaded; the message says which file and why."""


def existing_folder(path: str | Path) -> Path:
    """``path`` as a Path if it is a folder; else a CheckpointError that says what is wrong, also for a Hub-style
    name ("org/model"), which cannot be downloaded here."""
    folder = Path(path)
    if folder.is_dir():
        return folder
    text = str(path)
    if text.count("/") == 1 and not text.startswith((".", "/", "~")) and not folder.parent.is_dir():
        raise CheckpointError(f"checkpoint {text!r} is not a local folder; loading from the Hugging Face Hub is not "
                              "supported (nothing is downloaded): pass a local folder such as checkpoints/tiny")
    raise CheckpointError(f"checkpoint folder {text!r} does not exist")


def check_device(device: str | torch.device | None) -> None:
    """A device the installed torch can use, or a ValueError naming it and what is available."""
    if device is None:
        return
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device {device!r} is not a torch device ({e})") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()}
    if not available.get(kind, True):
        usable = [k for k, ok in available.items() if ok]
        why = ("this torch was built without CUDA" if kind == "cuda" and torch.version.cuda is None
               else "no such device is visible")
        raise ValueError(f"device {device!r} is not available ({why}; torch {torch.__version__}); "
                         f"available: {usable}")


def _cast_except(module: nn.Module, dtype: torch.dtype, keep: set[str], prefix: str = "") -> None:
    """Cast ``module``'s floating tensors to ``dtype`` in place, leaving the submodules named in ``keep`` as they
    are (cast first and back would already have rounded them)."""
    for name, child in module.named_children():
        full = prefix + name
        if full in keep:
            continue
        if any(k.startswith(full + ".") for k in keep):
            _cast_except(child, dtype, keep, full + ".")
        else:
            child.to(dtype)
    for tensor in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
        if tensor.is_floating_point():
            tensor.data = tensor.data.to(dtype)


class PretrainedMixin:
    """Mix into an ``nn.Module`` whose ``__init__`` takes one config with ``to_dict``/``from_dict``."""

    config_class: type
    # Submodules that stay float32 whatever dtype the rest is saved or loaded in (as transformers'
    # ``_keep_in_fp32_modules``): for a module whose outputs a rounding error would change, not merely perturb.
    keep_in_fp32_modules: tuple[str, ...] = ()

    def _to(self, device=None, dtype: torch.dtype | None = None):
        """``self.to(device, dtype)``, leaving ``keep_in_fp32_modules`` in float32."""
        self.to(device=device)
        if dtype is not None:
            _cast_except(self, dtype, set(self.keep_in_fp32_modules))
        return self

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> None:
        """Write ``config.json`` and ``model.safetensors`` (floating tensors cast to ``dtype`` if given, except in
        ``keep_in_fp32_modules``)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        module: nn.Module = self if dtype is None else copy.deepcopy(self)._to(dtype=dtype)
        with atomic_path(path / WEIGHTS_NAME) as tmp:
            save_model(module, str(tmp), metadata={"format": "pt"})
        write_text(path / CONFIG_NAME, json.dumps(self.config.to_dict(), indent=2))

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None):
        check_device(device)
        path = existing_folder(path)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (path / name).is_file():
                raise CheckpointError(f"checkpoint {str(path)!r} has no {name}")
        try:
            config = cls.config_class.from_dict(json.loads((path / CONFIG_NAME).read_text()))
        except (json.JSONDecodeError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path / CONFIG_NAME}: not a valid {cls.config_class.__name__}: {e}") from None
        model = cls(config)
        try:
            missing, unexpected = load_model(model, str(path / WEIGHTS_NAME), strict=False)
        except SafetensorError as e:
            raise CheckpointError(f"{path / WEIGHTS_NAME} is not a readable safetensors file ({e})") from None
        except RuntimeError as e:  # shape mismatches between the weights and the config
            first = str(e).strip().splitlines()[-1].strip()
            raise CheckpointError(f"{path / WEIGHTS_NAME} does not fit {path / CONFIG_NAME}: {first}") from None
        # Strictness checked here so the error can name the tensors instead of a long torch message.
        if missing or unexpected:
            raise CheckpointError(
                f"{path / WEIGHTS_NAME} does not fit {path / CONFIG_NAME}: missing {sorted(missing)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]}"
            )
        return model._to(device, dtype).eval()
