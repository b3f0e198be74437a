"""Hybrid mode and the diffusion-only baseline, from ``diffusers`` parts: a refiner ``UNet2DModel`` conditioned on
the VQ decoding of AR tokens, a caption-conditioned ``UNet2DConditionModel``, DPM-Solver++ sampling, their
pipelines (their trainer is ``tools.train.diffusion``). Names are imported on first use (PEP 562), as in ``vq``."""

import importlib

_EXPORTS = {
    "RefinerConfig": ".config", "BaselineConfig": ".config", "Refiner": ".refiner", "DiffusionBaseline": ".baseline",
    "HybridPipeline": ".pipeline", "RefinerPipeline": ".pipeline", "DiffusionBaselinePipeline": ".pipeline",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hybrid' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
