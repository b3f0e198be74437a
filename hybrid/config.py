"""Typed configs of the diffusion refiner and of the diffusion-only baseline (both ``diffusers`` UNets)."""

from __future__ import annotations

from dataclasses import dataclass

from vq.pretrained import JSONConfig, check_int, check_number, require_positive_ints

PREDICTION_TYPES = ("epsilon", "v_prediction")
REFINER_TARGETS = ("image", "residual")


def _check_unet(cfg) -> None:
    object.__setattr__(cfg, "block_out_channels", tuple(cfg.block_out_channels))
    require_positive_ints(cfg, ("image_size", "layers_per_block", "norm_num_groups", "num_train_timesteps"))
    if not cfg.block_out_channels or any(c % cfg.norm_num_groups for c in cfg.block_out_channels):
        raise ValueError(f"block_out_channels must be multiples of norm_num_groups {cfg.norm_num_groups}, "
                         f"got {cfg.block_out_channels!r}")
    if cfg.image_size % 2 ** (len(cfg.block_out_channels) - 1):
        raise ValueError(f"image_size {cfg.image_size} must be divisible by 2 ** (len(block_out_channels) - 1)")
    if cfg.prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {list(PREDICTION_TYPES)}, got {cfg.prediction_type!r}")


@dataclass(frozen=True)
class RefinerConfig(JSONConfig):
    """A ``UNet2DModel`` that denoises an image given the VQ decoding of its tokens (6 input channels)."""

    image_size: int = 64
    block_out_channels: tuple[int, ...] = (32, 64, 128)
    layers_per_block: int = 1
    norm_num_groups: int = 8
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "epsilon"
    # The strongest noise it was trained to remove (the trainer's timestep_fraction); refine() refuses more.
    max_strength: float = 1.0
    # What it diffuses. "image": the image itself, refinement starting from the noised AR image. "residual":
    # (image - condition) / residual_scale, starting from noise over a zero residual, so a model that predicts
    # no change returns the condition; residual_scale (the residual's standard deviation, measured and set by
    # the trainer) brings a residual of a few grey levels up to the unit scale the noise schedule assumes.
    target: str = "image"
    residual_scale: float = 1.0

    def __post_init__(self):
        _check_unet(self)
        if self.target not in REFINER_TARGETS:
            raise ValueError(f"target must be one of {list(REFINER_TARGETS)}, got {self.target!r}")
        check_number("residual_scale", self.residual_scale, 0, low_open=True)
        check_number("max_strength", self.max_strength, 0, 1, low_open=True)


@dataclass(frozen=True)
class BaselineConfig(JSONConfig):
    """A ``UNet2DConditionModel`` with cross-attention over a small caption encoder trained from scratch."""

    image_size: int = 64
    block_out_channels: tuple[int, ...] = (32, 64, 128)
    layers_per_block: int = 1
    norm_num_groups: int = 8
    attention_head_dim: int = 16
    # Cross-attention blocks at the lowest-resolution levels only (None: every level but the first). Attention
    # at 64x64 or 32x32 costs a CPU far more than the convolutions around it.
    cross_attention_levels: int | None = None
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    # v, not the noise: this schedule ends at zero signal (alphas_cumprod[999] = 2.4e-9), where a noise prediction
    # says nothing about the image (its image estimate is the noise error times 2e4), so sampling starts from a
    # wrong mean colour; v at zero signal is minus the image (Lin et al. 2024, "Common diffusion noise schedules
    # and sample steps are flawed"). Seen: the epsilon-trained tiny baseline drew every background grey-violet.
    prediction_type: str = "v_prediction"
    # caption encoder
    text_vocab_size: int = 448  # the caption tokenizer's pieces; PAD and NULL are added after them
    max_caption_tokens: int = 32
    text_dim: int = 128
    text_layers: int = 2
    text_heads: int = 4

    def __post_init__(self):
        _check_unet(self)
        require_positive_ints(self, ("attention_head_dim", "text_vocab_size", "max_caption_tokens", "text_dim",
                                     "text_layers", "text_heads"))
        check_int("cross_attention_levels", self.cross_attention_levels, 1, len(self.block_out_channels),
                  optional=True, note=" (the number of levels of block_out_channels)")
        if self.text_dim % self.text_heads:
            raise ValueError(f"text_dim {self.text_dim} must be a multiple of text_heads {self.text_heads}")

    @property
    def attention_levels(self) -> int:
        levels = len(self.block_out_channels)
        return levels - 1 if self.cross_attention_levels is None else self.cross_attention_levels

    @property
    def pad_id(self) -> int:
        return self.text_vocab_size

    @property
    def null_id(self) -> int:
        return self.text_vocab_size + 1

