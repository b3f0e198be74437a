"""Typed configs of the training runs: what every trainer reads (``TrainConfig``, used by the shared loop in
``tools.train.loop``), each model's run (``VQTrainConfig``, ``ARTrainConfig``, ``DiffusionTrainConfig``), and the
presets in ``configs/`` that pair a model config with its run."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

from ar_model.config import ARConfig
from hybrid.config import BaselineConfig, RefinerConfig
from vq.config import VQConfig
from vq.pretrained import JSONConfig, require_positive_ints


def read_preset(folder: str, name: str, what: str) -> dict:
    """The JSON of preset ``name`` in ``configs/<folder>/``; an unknown name is an error listing the known ones."""
    root = resources.files("configs") / folder
    names = sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".json"))
    if name not in names:
        raise ValueError(f"{what} preset must be one of {names}, got {name!r}")
    return json.loads((root / f"{name}.json").read_text())


def preset_parts(d: dict) -> tuple[dict, dict]:
    """A preset's JSON -> its ``model`` and ``train`` dicts; any other key is an error."""
    unknown = sorted(set(d) - {"model", "train"})
    if unknown:
        raise ValueError(f"unknown preset keys {unknown}; allowed: ['model', 'train']")
    return dict(d.get("model", {})), dict(d.get("train", {}))


class PresetFiles:
    """``from_json`` and ``from_name`` for a preset class with ``from_dict``; ``folder`` is its ``configs/``
    folder and ``what`` its name in messages."""

    folder: str
    what: str

    @classmethod
    def from_json(cls, path: str | Path):
        return cls.from_dict(json.loads(Path(path).read_text()))

    @classmethod
    def from_name(cls, name: str):
        return cls.from_dict(read_preset(cls.folder, name, cls.what))


@dataclass(frozen=True)
class TrainConfig(JSONConfig):
    """What every trainer reads (the shared loop in ``tools.train.loop``); each model's config adds its own fields
    and defaults."""

    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 100
    max_steps: int = 4000
    log_every: int = 20
    checkpoint_every: int = 200
    seed: int = 0
    num_train: int = 20000  # scenes to read from the shards (all of them if fewer)

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(self.betas))
        require_positive_ints(self, ("batch_size", "max_steps", "log_every", "checkpoint_every", "num_train"))
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")


@dataclass(frozen=True)
class VQTrainConfig(TrainConfig):
    lr: float = 2e-3
    l1_weight: float = 1.0
    l2_weight: float = 1.0


@dataclass(frozen=True)
class VQPreset(PresetFiles):
    folder, what = "vq", "VQ"
    model: VQConfig = field(default_factory=VQConfig)
    train: VQTrainConfig = field(default_factory=VQTrainConfig)

    @classmethod
    def from_dict(cls, d: dict) -> "VQPreset":
        model, train = preset_parts(d)
        return cls(VQConfig.from_dict(model), VQTrainConfig.from_dict(train))


@dataclass(frozen=True)
class ARTrainConfig(TrainConfig):
    weight_decay: float = 0.05
    warmup_steps: int = 200
    checkpoint_every: int = 100
    num_train: int = 50000
    caption_dropout: float = 0.1  # captions replaced by the null caption, for classifier-free guidance
    text_vocab_size: int = 256  # sentencepiece vocabulary trained on the captions
    bf16: bool = False  # autocast matmuls to bfloat16 (CUDA, or CPUs with AVX512-BF16/AMX)
    # The loss on image codes only, each image position's softmax over the codebook only (Emu3, DALLE-pytorch);
    # False: every token after BOI (codes, structural tokens, EOI) over the whole vocabulary.
    image_only_loss: bool = False
    z_loss: float = 0.0  # weight of mean(logsumexp(logits)^2) (Chameleon, Lumina-mGPT use 1e-5)
    dropout: float = 0.0  # on token embeddings and on each residual branch (LlamaGen: 0.1); training only
    zero_init_head: bool = False  # output head starts at zero: every code equally likely (LlamaGen)
    # torch.compile the decoder's forward and backward: fused element-wise kernels (norms, SwiGLU, rotary) make a
    # step ~1.3x cheaper on this CPU after a few minutes of compiling (docs/recipe.md); the weights and
    # checkpoints are those of the plain module, so a run may be resumed with or without it.
    compile: bool = False

    def __post_init__(self):
        super().__post_init__()
        require_positive_ints(self, ("text_vocab_size",))
        if not 0 <= self.caption_dropout < 1:
            raise ValueError(f"caption_dropout must be in [0, 1), got {self.caption_dropout!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not self.z_loss >= 0:
            raise ValueError(f"z_loss must be >= 0, got {self.z_loss!r}")


@dataclass(frozen=True)
class ARPreset(PresetFiles):
    """A decoder shape and its training run. ``text_vocab_size``, ``codebook_size`` and ``grid_size`` of the
    model are filled in by the trainer from the caption tokenizer and the VQ tokenizer it is given (until then
    they hold ARConfig's defaults); a preset that names no ``max_caption_tokens`` gets ARConfig's, 40."""

    folder, what = "ar", "AR"
    model: ARConfig = field(default_factory=ARConfig)
    train: ARTrainConfig = field(default_factory=ARTrainConfig)

    @classmethod
    def from_dict(cls, d: dict) -> "ARPreset":
        model, train = preset_parts(d)
        return cls(ARConfig.from_dict(model), ARTrainConfig.from_dict(train))  # checked now, not after data prep

    def model_config(self, text_vocab_size: int, codebook_size: int, grid_size: int) -> ARConfig:
        return replace(self.model, text_vocab_size=text_vocab_size, codebook_size=codebook_size, grid_size=grid_size)


@dataclass(frozen=True)
class DiffusionTrainConfig(TrainConfig):
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 200
    checkpoint_every: int = 100
    num_train: int = 50000
    caption_dropout: float = 0.1  # baseline only
    # Train on the first fraction of the noise schedule only: the refiner starts from a partly noised image
    # (refine_strength), so the high-noise steps a full-schedule model learns are never run.
    timestep_fraction: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.caption_dropout < 1:
            raise ValueError(f"caption_dropout must be in [0, 1), got {self.caption_dropout!r}")
        if not 0 < self.timestep_fraction <= 1:
            raise ValueError(f"timestep_fraction must be in (0, 1], got {self.timestep_fraction!r}")


MODEL_CONFIGS = {"refiner": RefinerConfig, "diffusion": BaselineConfig}


@dataclass(frozen=True)
class DiffusionPreset:
    """A refiner's or a baseline's shape and its training run. Some model fields are filled in later
    (``with_model``): the baseline's ``text_vocab_size`` from its caption tokenizer, the refiner's
    ``max_strength`` and ``residual_scale`` by the trainer."""

    kind: str  # "refiner" or "diffusion" (the baseline)
    model: RefinerConfig | BaselineConfig
    train: DiffusionTrainConfig = field(default_factory=DiffusionTrainConfig)

    @classmethod
    def from_dict(cls, kind: str, d: dict) -> "DiffusionPreset":
        model, train = preset_parts(d)
        return cls(kind, MODEL_CONFIGS[kind].from_dict(model), DiffusionTrainConfig.from_dict(train))

    def with_model(self, **fields) -> "DiffusionPreset":
        """The preset with these model fields replaced (and checked again)."""
        return replace(self, model=replace(self.model, **fields))

    @classmethod
    def from_name(cls, kind: str, name: str) -> "DiffusionPreset":
        if name.endswith(".json"):
            return cls.from_dict(kind, json.loads(Path(name).read_text()))
        return cls.from_dict(kind, read_preset(kind, name, kind))
