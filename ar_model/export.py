"""Export the decoder to a ``transformers`` ``LlamaForCausalLM`` folder that loads with no code of ours.

Our parameter names are Llama's without the ``model.`` prefix, the rotary embedding uses the same
``rotate_half`` layout, and every sequence has the same positions, so the export is a renaming: no permutation,
no attention mask. The folder also holds the caption tokenizer (``spiece.model``) and ``t2i_layout.json``,
which says how a prompt becomes input ids (caption pieces, PAD to the fixed length, BOI) and which ids are image
codes, for a server that has only the folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from vq.atomic import atomic_path, write_text

from .config import ARConfig
from .model import ARDecoder
from .text_tokenizer import CONFIG_NAME as TOKENIZER_CONFIG
from .text_tokenizer import MODEL_NAME as TOKENIZER_MODEL

LAYOUT_NAME = "t2i_layout.json"


def llama_config_dict(decoder: ARDecoder) -> dict:
    c = decoder.config
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

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    c = decoder.config
    with atomic_path(out_dir / "model.safetensors") as tmp:
        save_file(llama_state_dict(decoder), str(tmp), metadata={"format": "pt"})
    write_text(out_dir / "config.json", json.dumps(llama_config_dict(decoder), indent=2))
    write_text(out_dir / "generation_config.json", json.dumps(
        {"bos_token_id": c.boi_id, "eos_token_id": c.eoi_id, "pad_token_id": c.pad_id,
         "max_new_tokens": c.image_tokens, "do_sample": False}, indent=2))
    write_text(out_dir / LAYOUT_NAME, json.dumps({
        "prompt": "caption pieces (spiece.model, after spelling runs of capitals letter by letter), then "
                  f"pad_id up to {c.max_caption_tokens} tokens, then boi_id; generate {c.image_tokens} tokens",
        "max_caption_tokens": c.max_caption_tokens, "pad_id": c.pad_id, "boi_id": c.boi_id, "eoi_id": c.eoi_id,
        "null_id": c.null_id, "image_offset": c.image_offset, "codebook_size": c.codebook_size,
        "grid_size": c.grid_size, "image_tokens": c.image_tokens,
    }, indent=2))
    if caption_tokenizer_dir is not None:
        for name in (TOKENIZER_MODEL, TOKENIZER_CONFIG):
            with atomic_path(out_dir / name) as tmp:
                shutil.copyfile(Path(caption_tokenizer_dir) / name, tmp)
    return out_dir


@torch.no_grad()
def transformers_greedy_image_tokens(model, prompts: torch.Tensor, config: ARConfig) -> torch.Tensor:
    """Greedy ``LlamaForCausalLM.generate`` on prefix ids (B, prefix_len) -> image codes (B, image_tokens),
    choosing among the image codes only, as our decoder does."""
    out = model.generate(input_ids=prompts, attention_mask=torch.ones_like(prompts), do_sample=False,
                         max_new_tokens=config.image_tokens, min_new_tokens=config.image_tokens,
                         suppress_tokens=list(range(config.image_offset)))
    return out[:, config.prefix_len:] - config.image_offset


@torch.no_grad()
def verify_export(decoder: ARDecoder, folder: str | Path, prompts: torch.Tensor) -> dict:
    """Load ``folder`` with plain ``transformers`` and compare it with ``decoder`` on ``prompts`` (prefix ids,
    (B, prefix_len)): the largest logit difference over every position of our greedy sequences, and whether
    ``LlamaForCausalLM.generate`` (greedy, image codes only) returns our greedy tokens."""
    from transformers import LlamaForCausalLM

    from .generate import generate
    from .sampling import SamplingConfig

    c = decoder.config
    hf = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ours_tokens = generate(decoder, prompts, SamplingConfig("greedy"), progress=False)
    seq = torch.cat([prompts, ours_tokens + c.image_offset], dim=1)
    decoder.clear_caches()
    diff = (decoder(seq).float() - hf(input_ids=seq).logits.float()).abs().max().item()
    theirs = transformers_greedy_image_tokens(hf, prompts, c)
    return {"prompts": len(prompts), "max_abs_logit_diff": diff,
            "greedy_tokens_identical": bool(torch.equal(theirs, ours_tokens))}
