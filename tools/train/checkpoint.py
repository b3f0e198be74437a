"""Training checkpoints as one safetensors file: model, optimizer state, RNG state; step and settings as metadata.

No pickle: optimizer tensors are flattened to ``optim.<param>.<name>`` and its param groups go to the JSON
metadata. The file is written atomically, so a run killed at any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from vq.pretrained import atomic_path


def save_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int,
                    extra: dict | None = None) -> None:
    tensors = {f"model.{k}": v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    optim = optimizer.state_dict()
    for pid, state in optim["state"].items():
        for name, value in state.items():
            tensors[f"optim.{pid}.{name}"] = torch.as_tensor(value).detach().clone().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    metadata = {"step": step, "param_groups": optim["param_groups"], "extra": extra or {}}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"training": json.dumps(metadata)})


def load_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore model, optimizer and RNG in place; returns the metadata (``step``, ``extra``)."""
    with safe_open(str(path), framework="pt") as f:
        metadata = json.loads(f.metadata()["training"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": metadata["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    return metadata
