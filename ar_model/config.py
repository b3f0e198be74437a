"""Typed configs of the autoregressive decoder (``ARConfig``) and its training run (``ARTrainConfig``).

One vocabulary holds everything the decoder reads or writes, so that it is a plain ``LlamaForCausalLM``:

    [0, text_vocab_size)                        caption pieces (the sentencepiece ids)
    text_vocab_size + (0, 1, 2, 3)              PAD, BOI (begin of image), EOI (end of image), NULL (null caption)
    [image_offset, image_offset + codebook)     image codes (the VQ ids, shifted)

A training sequence is the caption right-padded with PAD to ``max_caption_tokens``, then BOI, the image codes in
raster order, then EOI. Every sequence has the same length and every token sits at the same position, so no
attention mask is needed, and the exported model computes exactly what ours does. The null caption (for
classifier-free guidance) is NULL followed by PADs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from vq.config import JSONConfig, TrainConfig, preset_parts, read_preset, require_positive_ints

SPECIAL_TOKENS = ("pad", "boi", "eoi", "null")


@dataclass(frozen=True)
class ARConfig(JSONConfig):
    text_vocab_size: int = 256
    codebook_size: int = 512
    grid_size: int = 16  # image tokens per side (the VQ tokenizer's grid)
    max_caption_tokens: int = 40
    dim: int = 256
    n_layers: int = 8
    n_heads: int = 8
    n_kv_heads: int = 8  # fewer than n_heads: grouped-query attention
    intermediate_size: int | None = None  # SwiGLU hidden width; None: 8/3 dim rounded up to a multiple of 64
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5

    def __post_init__(self):
        require_positive_ints(self, ("text_vocab_size", "codebook_size", "grid_size", "max_caption_tokens", "dim",
                                     "n_layers", "n_heads", "n_kv_heads"))
        if self.dim % self.n_heads or (self.dim // self.n_heads) % 2:
            raise ValueError(f"dim must be a multiple of n_heads with an even head size, got dim={self.dim}, "
                             f"n_heads={self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads must be a multiple of n_kv_heads, got {self.n_heads} and {self.n_kv_heads}")
        if self.intermediate_size is None:
            object.__setattr__(self, "intermediate_size", -(-8 * self.dim // 3 // 64) * 64)

    # --- the vocabulary -------------------------------------------------------------------------------------
    @property
    def pad_id(self) -> int:
        return self.text_vocab_size

    @property
    def boi_id(self) -> int:
        return self.text_vocab_size + 1

    @property
    def eoi_id(self) -> int:
        return self.text_vocab_size + 2

    @property
    def null_id(self) -> int:
        return self.text_vocab_size + 3

    @property
    def image_offset(self) -> int:
        return self.text_vocab_size + len(SPECIAL_TOKENS)

    @property
    def vocab_size(self) -> int:
        return self.image_offset + self.codebook_size

    # --- the sequence ---------------------------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def image_tokens(self) -> int:
        return self.grid_size ** 2

    @property
    def prefix_len(self) -> int:
        """Caption slots plus BOI: the prompt that generation starts from."""
        return self.max_caption_tokens + 1

    @property
    def max_seq_len(self) -> int:
        """Prompt, image codes and EOI."""
        return self.prefix_len + self.image_tokens + 1


@dataclass(frozen=True)
class ARTrainConfig(TrainConfig):
    weight_decay: float = 0.05
    warmup_steps: int = 200
    checkpoint_every: int = 100
    num_train: int = 50000
    caption_dropout: float = 0.1  # captions replaced by the null caption, for classifier-free guidance
    text_vocab_size: int = 256  # sentencepiece vocabulary trained on the captions
    bf16: bool = False  # autocast matmuls to bfloat16 (CUDA, or CPUs with AVX512-BF16/AMX)

    def __post_init__(self):
        super().__post_init__()
        require_positive_ints(self, ("text_vocab_size",))
        if not 0 <= self.caption_dropout < 1:
            raise ValueError(f"caption_dropout must be in [0, 1), got {self.caption_dropout!r}")


@dataclass(frozen=True)
class ARPreset:
    """A decoder shape and its training run. ``text_vocab_size``, ``codebook_size`` and ``grid_size`` of the
    model are filled in by the trainer from the caption tokenizer and the VQ tokenizer it is given."""

    model: dict = field(default_factory=dict)
    train: ARTrainConfig = field(default_factory=ARTrainConfig)

    @classmethod
    def from_dict(cls, d: dict) -> "ARPreset":
        model, train = preset_parts(d)
        ARConfig.from_dict(model)  # validate the keys and values now, not after data preparation
        return cls(model, ARTrainConfig.from_dict(train))

    @classmethod
    def from_json(cls, path: str | Path) -> "ARPreset":
        return cls.from_dict(json.loads(Path(path).read_text()))

    @classmethod
    def from_name(cls, name: str) -> "ARPreset":
        return cls.from_dict(read_preset("ar", name, "AR"))

    def model_config(self, text_vocab_size: int, codebook_size: int, grid_size: int) -> ARConfig:
        return ARConfig.from_dict({**self.model, "text_vocab_size": text_vocab_size, "codebook_size": codebook_size,
                                   "grid_size": grid_size})
