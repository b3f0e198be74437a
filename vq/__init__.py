"""VQ image tokenizer: convolutional encoder and decoder around a vector-quantize-pytorch quantizer.

Names are imported on first use (PEP 562), so ``vq.atomic``, which every package uses for file writes, does
not pull in torch.
"""

import importlib

_EXPORTS = {
    "VQConfig": ".config", "VQPreset": ".config", "VQTrainConfig": ".config",
    "VQModel": ".model", "VQOutput": ".model", "CheckpointError": ".serialization",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vq' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
