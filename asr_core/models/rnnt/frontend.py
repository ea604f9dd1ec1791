"""The transducer's feature front end: stack k 10 ms frames, then LayerNorm (edgedict: no CMVN).

Legend: B batch, N mel bins, F feature frames, S stacked frames = ceil(F / k).
"""

from __future__ import annotations

import torch
from torch import nn


def stack_frames(x: torch.Tensor, x_lens: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N, F) features -> (B, S, N*k): frames [k s, k s + k) concatenated, frame-major.

    Frames at or after ``x_lens`` are zeroed first and F is padded with zeros to a multiple
    of k, so the last, partial stack of an utterance is the same in a padded batch, alone,
    and at the end of a stream.
    """
    assert x.ndim == 3, x.shape
    b, n, f = x.shape
    valid = torch.arange(f, device=x.device)[None, :] < x_lens[:, None]
    x = x.masked_fill(~valid[:, None, :], 0.0)
    s = (f + k - 1) // k
    x = nn.functional.pad(x, (0, s * k - f))
    x = x.transpose(1, 2).reshape(b, s, n * k)
    return x, torch.div(x_lens + k - 1, k, rounding_mode="floor")


class FrontEnd(nn.Module):
    """``(B, N, F), (B,) -> (B, S, N*k), (B,)``: stacking then LayerNorm over the N*k features."""

    def __init__(self, in_features: int, stack: int) -> None:
        super().__init__()
        self.stack = stack
        self.norm = nn.LayerNorm(in_features * stack)

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, s_lens = stack_frames(x, x_lens, self.stack)
        return self.norm(s), s_lens
