"""Export the decoder to a ``transformers`` ``LlamaForCausalLM`` folder that loads with no code of ours.

Our parameter names are Llama's without the ``model.`` prefix, the rotary embedding uses the same
``rotate_half`` layout, and every sequence has the same positions, so the export is a renaming: no permutation,
no attention mask. The folder also holds the caption tokenizer (``spiece.model``) and ``t2i_layout.json``,
which says how a prompt becomes input ids (caption pieces, PAD to the fixed length, BOI), which ids are image
codes, and which generated tokens are the layout's structural tokens (forced, never sampled: with
``transformers``, by ``prefix_allowed_tokens_fn``), for a server that has only the folder. The "rope_2d" layout
has no Llama equivalent and is refused.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from vq.pretrained import atomic_path, write_text

from .config import ARConfig
from .layout import image_layout
from .model import ARDecoder
from .text_tokenizer import CONFIG_NAME as TOKENIZER_CONFIG
from .text_tokenizer import MODEL_NAME as TOKENIZER_MODEL

LAYOUT_NAME = "t2i_layout.json"


def check_exportable(config: ARConfig) -> None:
    if config.image_layout == "rope_2d":
        raise ValueError("image_layout 'rope_2d' gives image tokens 2-D rotary positions, which LlamaForCausalLM "
                         "does not have: only the 1-D layouts ('plain', 'row_end', 'row_start') export")


def llama_config_dict(decoder: ARDecoder) -> dict:
    c = decoder.config
    check_exportable(c)
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": c.vocab_size, "hidden_size": c.dim, "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.n_layers, "num_attention_heads": c.n_heads, "num_key_value_heads": c.n_kv_heads,
        "head_dim": c.head_dim, "hidden_act": "silu", "max_position_embeddings": c.max_seq_len,
        "rms_norm_eps": c.norm_eps, "rope_theta": c.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_theta},
        "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": False,
        "bos_token_id": c.boi_id, "eos_token_id": c.eoi_id, "pad_token_id": c.pad_id,
        "torch_dtype": "float32",
    }


def llama_state_dict(decoder: ARDecoder) -> dict[str, torch.Tensor]:
    return {(k if k.startswith("lm_head.") else f"model.{k}"): v.detach().float().contiguous()
            for k, v in decoder.state_dict().items()}


def export_llama(decoder: ARDecoder, out_dir: str | Path, caption_tokenizer_dir: str | Path | None = None) -> Path:
    """Write ``config.json``, ``model.safetensors``, ``generation_config.json``, ``t2i_layout.json`` and the caption
    tokenizer into ``out_dir``; returns it."""
    from safetensors.torch import save_file

    c = decoder.config
    check_exportable(c)  # before anything is written
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "model.safetensors") as tmp:
        save_file(llama_state_dict(decoder), str(tmp), metadata={"format": "pt"})
    write_text(out_dir / "config.json", json.dumps(llama_config_dict(decoder), indent=2))
    write_text(out_dir / "generation_config.json", json.dumps(
        {"bos_token_id": c.boi_id, "eos_token_id": c.eoi_id, "pad_token_id": c.pad_id,
         "max_new_tokens": c.image_part_len, "do_sample": False}, indent=2))
    write_text(out_dir / LAYOUT_NAME, json.dumps(layout_record(c), indent=2))
    if caption_tokenizer_dir is not None:
        for name in (TOKENIZER_MODEL, TOKENIZER_CONFIG):
            with atomic_path(out_dir / name) as tmp:
                shutil.copyfile(Path(caption_tokenizer_dir) / name, tmp)
    return out_dir


def layout_record(c: ARConfig) -> dict:
    """``t2i_layout.json``: how input ids are built and what each generated token must be."""
    forced = image_layout(c).forced_steps(c)
    return {
        "prompt": "caption pieces (spiece.model, after spelling runs of capitals letter by letter), then "
                  f"pad_id up to {c.max_caption_tokens} tokens, then boi_id; generate {c.image_part_len} tokens: "
                  "the token at each step listed in forced_tokens is that id, every other one is an image code "
                  "(image_offset + code, code < codebook_size), in raster order",
        "image_layout": c.image_layout,
        "max_caption_tokens": c.max_caption_tokens, "pad_id": c.pad_id, "boi_id": c.boi_id, "eoi_id": c.eoi_id,
        "null_id": c.null_id, "image_offset": c.image_offset, "codebook_size": c.codebook_size,
        "grid_size": c.grid_size, "image_tokens": c.image_tokens, "generated_tokens": c.image_part_len,
        "forced_tokens": {str(step): token for step, token in forced.items()},
    }


def allowed_tokens_fn(config: ARConfig):
    """A ``prefix_allowed_tokens_fn`` for ``LlamaForCausalLM.generate``: the layout's structural token where one
    is due, else any image code (what our decoder chooses among)."""
    forced = image_layout(config).forced_steps(config)
    codes = list(range(config.image_offset, config.image_offset + config.codebook_size))

    def allowed(batch_id: int, input_ids: torch.Tensor) -> list[int]:
        step = input_ids.shape[-1] - config.prefix_len
        return [forced[step]] if step in forced else codes

    return allowed


def image_codes_of(generated: torch.Tensor, config: ARConfig) -> torch.Tensor:
    """Generated tokens (B, image_part_len) -> image codes (B, image_tokens), structural tokens dropped."""
    positions = torch.tensor(image_layout(config).code_positions) - config.prefix_len
    return generated[:, positions] - config.image_offset


@torch.no_grad()
def transformers_greedy_image_tokens(model, prompts: torch.Tensor, config: ARConfig) -> torch.Tensor:
    """Greedy ``LlamaForCausalLM.generate`` on prefix ids (B, prefix_len) -> image codes (B, image_tokens),
    choosing among the image codes only and forcing the layout's structural tokens, as our decoder does."""
    out = model.generate(input_ids=prompts, attention_mask=torch.ones_like(prompts), do_sample=False,
                         max_new_tokens=config.image_part_len, min_new_tokens=config.image_part_len,
                         prefix_allowed_tokens_fn=allowed_tokens_fn(config))
    return image_codes_of(out[:, config.prefix_len:], config)


@torch.no_grad()
def verify_export(decoder: ARDecoder, folder: str | Path, prompts: torch.Tensor) -> dict:
    """Load ``folder`` with plain ``transformers`` and compare it with ``decoder`` on ``prompts`` (prefix ids,
    (B, prefix_len)): the largest logit difference over every position of our greedy sequences, and whether
    ``LlamaForCausalLM.generate`` (greedy, image codes only) returns our greedy tokens."""
    from transformers import LlamaForCausalLM

    from .generate import generate
    from .sampling import SamplingConfig
    from .sequence import training_sequences

    c = decoder.config
    hf = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ours_tokens = generate(decoder, prompts, SamplingConfig("greedy"))
    seq = training_sequences(c, prompts, ours_tokens)
    diff = (decoder(seq).float() - hf(input_ids=seq).logits.float()).abs().max().item()
    theirs = transformers_greedy_image_tokens(hf, prompts, c)
    return {"prompts": len(prompts), "max_abs_logit_diff": diff,
            "greedy_tokens_identical": bool(torch.equal(theirs, ours_tokens))}
