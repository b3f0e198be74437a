"""VQ image tokenizer: convolutional encoder and decoder around a vector-quantize-pytorch quantizer.

``vq.pretrained`` holds what every model of the project needs (atomic writes, the JSON config base,
``save_pretrained`` / ``from_pretrained``). Names are imported on first use (PEP 562).
"""

import importlib

_EXPORTS = {
    "VQConfig": ".config",
    "VQModel": ".model", "VQOutput": ".model", "CheckpointError": ".pretrained",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vq' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
