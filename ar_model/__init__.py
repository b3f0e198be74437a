"""Text-conditioned autoregressive decoder over image tokens: caption tokenizer, Llama decoder, static KV cache,
sampling with classifier-free guidance, and the ``TextToImage`` pipeline (its trainer is ``tools.train.ar``).

Names are imported on first use (PEP 562), as in ``vq``.
"""

import importlib

_EXPORTS = {
    "ARConfig": ".config",
    "ARDecoder": ".model", "KVCache": ".kv_cache", "CaptionTokenizer": ".text_tokenizer",
    "SamplingConfig": ".sampling", "generate": ".generate", "prefill": ".generate", "decode_one_token": ".generate",
    "TextToImage": ".pipeline", "TextToImageOutput": ".pipeline_utils", "GenerationSettings": ".generation_settings",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ar_model' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
