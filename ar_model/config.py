"""The typed config of the autoregressive decoder (``ARConfig``); its training run's is in ``tools.train.config``.

One vocabulary holds everything the decoder reads or writes, so that it is a plain ``LlamaForCausalLM``:

    [0, text_vocab_size)                        caption pieces (the sentencepiece ids)
    text_vocab_size + (0, 1, 2, 3)              PAD, BOI (begin of image), EOI (end of image), NULL (null caption)
    text_vocab_size + 4 + (0, ..)               structural tokens of the image layout (EOL, or ROW_0 ... ROW_{h-1})
    [image_offset, image_offset + codebook)     image codes (the VQ ids, shifted)

A training sequence is the caption right-padded with PAD to ``max_caption_tokens``, then BOI, the image part,
then EOI. The image part depends on ``image_layout`` (``ar_model.layout``): the codes in raster order
("plain", "rope_2d"), with an end-of-row token after every row ("row_end", Emu3 / Lumina-mGPT), or with a row
token ROW_r before row r ("row_start"). Structural tokens are fixed by the layout, so decoding writes them, never
samples them. Every sequence has the same length and every token sits at the same position, so no attention
mask is needed, and the exported model computes exactly what ours does ("rope_2d" gives image tokens 2-D rotary
positions, LlamaGen's scheme, and cannot be exported). The null caption (for classifier-free guidance) is NULL
followed by PADs.
"""

from __future__ import annotations

from dataclasses import dataclass

from vq.pretrained import JSONConfig, require_positive_ints

SPECIAL_TOKENS = ("pad", "boi", "eoi", "null")
IMAGE_LAYOUTS = ("plain", "row_end", "row_start", "rope_2d")


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
    image_layout: str = "plain"  # one of IMAGE_LAYOUTS: how the decoder knows each image token's row and column

    def __post_init__(self):
        require_positive_ints(self, ("text_vocab_size", "codebook_size", "grid_size", "max_caption_tokens", "dim",
                                     "n_layers", "n_heads", "n_kv_heads"))
        if self.dim % self.n_heads or (self.dim // self.n_heads) % 2:
            raise ValueError(f"dim must be a multiple of n_heads with an even head size, got dim={self.dim}, "
                             f"n_heads={self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads must be a multiple of n_kv_heads, got {self.n_heads} and {self.n_kv_heads}")
        if self.image_layout not in IMAGE_LAYOUTS:
            raise ValueError(f"image_layout must be one of {list(IMAGE_LAYOUTS)}, got {self.image_layout!r}")
        if self.image_layout == "rope_2d" and self.head_dim % 4:
            raise ValueError(f"image_layout 'rope_2d' needs a head size divisible by 4 (half for rows, half for "
                             f"columns), got {self.head_dim}")
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
    def structural_offset(self) -> int:
        """The first structural token (EOL for "row_end", ROW_0 for "row_start")."""
        return self.text_vocab_size + len(SPECIAL_TOKENS)

    @property
    def num_structural_tokens(self) -> int:
        return {"row_end": 1, "row_start": self.grid_size}.get(self.image_layout, 0)

    @property
    def image_offset(self) -> int:
        return self.structural_offset + self.num_structural_tokens

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
    def image_part_len(self) -> int:
        """Image codes plus the layout's structural tokens, between BOI and EOI."""
        return self.image_tokens + (self.grid_size if self.image_layout in ("row_end", "row_start") else 0)

    @property
    def max_seq_len(self) -> int:
        """Prompt, image part and EOI."""
        return self.prefix_len + self.image_part_len + 1
