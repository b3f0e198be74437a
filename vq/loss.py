"""Training loss of the tokenizer: L1 + L2 reconstruction plus the quantizer's commitment term.

The codebook itself follows an exponential moving average of the encoder outputs assigned to it (with k-means
initialisation and dead-code replacement), so it needs no gradient loss of its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def vq_loss(recon: torch.Tensor, target: torch.Tensor, commit: torch.Tensor, l1_weight: float = 1.0,
            l2_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    l1 = F.l1_loss(recon, target)
    l2 = F.mse_loss(recon, target)
    total = l1_weight * l1 + l2_weight * l2 + commit
    return total, {"l1": l1.item(), "l2": l2.item(), "commit": commit.item()}
