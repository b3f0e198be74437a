"""``save_pretrained`` / ``from_pretrained`` for every model of the project: ``config.json`` + ``model.safetensors``.

Loading is strict and each failure names the folder, the file and what was wrong: a missing folder or file, a
config with unknown keys, a truncated weights file, or weights that do not fit the config.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from .atomic import atomic_path, write_text

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be loaded; the message says which file and why."""


class PretrainedMixin:
    """Mix into an ``nn.Module`` whose ``__init__`` takes one config with ``to_dict``/``from_dict``."""

    config_class: type

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> None:
        """Write ``config.json`` and ``model.safetensors`` (floating tensors cast to ``dtype`` if given)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        module: nn.Module = self if dtype is None else copy.deepcopy(self).to(dtype)
        with atomic_path(path / WEIGHTS_NAME) as tmp:
            save_model(module, str(tmp), metadata={"format": "pt"})
        write_text(path / CONFIG_NAME, json.dumps(self.config.to_dict(), indent=2))

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None):
        path = Path(path)
        if not path.is_dir():
            raise CheckpointError(f"checkpoint folder {str(path)!r} does not exist")
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
        return model.to(device=device, dtype=dtype).eval()
