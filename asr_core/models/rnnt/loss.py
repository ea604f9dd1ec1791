"""The transducer loss: torchaudio's ``rnnt_loss`` on the fp32 lattice, blank 0."""

from __future__ import annotations

import torch
import torchaudio


def rnnt_loss(logits: torch.Tensor, logit_lens: torch.Tensor, targets: torch.Tensor, target_lens: torch.Tensor,
              blank: int = 0, reduction: str = "mean") -> torch.Tensor:
    """logits (B, T, U + 1, V) (cast to fp32 here), targets (B, U) padded -> the loss.

    ``reduction``: ``mean`` (over utterances; what the engine wants), ``sum`` or ``none``.
    """
    assert logits.ndim == 4 and logits.size(2) == targets.size(1) + 1, (logits.shape, targets.shape)
    return torchaudio.functional.rnnt_loss(
        logits.float(), targets.int(), logit_lens.int(), target_lens.int(), blank=blank, reduction=reduction)
