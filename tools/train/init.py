"""Starting a run from trained weights (``--init-from``): a release such as ``checkpoints/tiny`` or a run's
output, continued on new data or with a new schedule.

Unlike ``--resume`` (the same run, its optimizer and RNG state, the same losses as a run that never stopped),
a warm start keeps only the weights: the optimizer starts afresh and the schedule is the new preset's. What the
weights had already cost is carried over, so the run's ``train_seconds`` is the total for the model (which is
what the AR-vs-diffusion comparison keeps equal), and ``training.json`` records where it started.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class InitRecord:
    """Where a warm-started run's weights came from and what they had cost: its ``training.json`` entry."""

    path: str
    steps: int
    train_seconds: float

    def to_dict(self) -> dict:
        return {"path": self.path, "steps": self.steps, "train_seconds": self.train_seconds}


def model_folder(path: Path, component: str) -> Path:
    """The model folder of ``component`` ("decoder", "baseline", "refiner") under ``path``: the path itself when
    it is a model folder, else its ``component`` sub-folder (a pipeline or release folder)."""
    if (path / "config.json").is_file():
        return path
    if (path / component / "config.json").is_file():
        return path / component
    raise ValueError(f"--init-from: {str(path)!r} is neither a model folder (config.json + model.safetensors) nor a "
                     f"pipeline folder with a {component}/ model")


def prior_training(path: Path, record_key: str) -> InitRecord:
    """What the weights at ``path`` cost: a release's ``training.json`` (one entry per model, ``record_key`` of
    "ar", "baseline", "refiner"), else the ``training.json`` of the run folder above a run's output
    (``RUN/pipeline`` or ``RUN/model``). Weights with no record are an error: a comparison at equal cost needs it."""
    for file in (path / "training.json", path.parent / "training.json"):
        if file.is_file():
            data = json.loads(file.read_text())
            record = data[record_key] if record_key in data else data
            if "train_seconds" in record:
                # Steps in all, as train_seconds already are: a warm-started record's own steps plus its start's.
                steps = int(record.get("steps", 0)) + int((record.get("init_from") or {}).get("steps", 0))
                return InitRecord(str(path), steps, float(record["train_seconds"]))
    raise ValueError(f"--init-from: found no training.json with train_seconds for {str(path)!r} (looked in "
                     f"{str(path)!r} and {str(path.parent)!r}); warm starts carry the weights' training time over")


def load_init_weights(model: torch.nn.Module, init: torch.nn.Module, what: str) -> None:
    """Copy ``init``'s weights into ``model`` in place (the optimizer built around ``model`` keeps its
    parameters); their configs must be equal, or the error names the fields that differ."""
    mine, theirs = model.config.to_dict(), init.config.to_dict()
    if mine != theirs:
        diff = {k: (theirs.get(k), mine.get(k)) for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)}
        raise ValueError(f"--init-from: the {what} there does not have the preset's shape; (theirs, preset's) per "
                         f"field: {diff}")
    with torch.no_grad():
        state = {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in init.state_dict().items()}
        model.load_state_dict(state, strict=True)
