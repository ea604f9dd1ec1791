"""The joint network: concat(f, g) -> Linear -> tanh -> Linear(V) (edgedict ``Joint``).

``fc1`` is applied as ``f W_f + g W_g + b`` (the same maths as on the concatenation), so the
(B, T, U, D + P) concatenation is never built in training.
"""

from __future__ import annotations

import torch
from torch import nn


class Joint(nn.Module):
    def __init__(self, enc_dim: int, pred_dim: int, joint_dim: int, vocab_size: int) -> None:
        super().__init__()
        self.enc_dim = enc_dim
        self.fc1 = nn.Linear(enc_dim + pred_dim, joint_dim)
        self.fc2 = nn.Linear(joint_dim, vocab_size)

    def forward(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """f (..., D) and g (..., P), broadcastable -> logits (..., V)."""
        w_f, w_g = self.fc1.weight[:, : self.enc_dim], self.fc1.weight[:, self.enc_dim:]
        h = nn.functional.linear(f, w_f, self.fc1.bias) + nn.functional.linear(g, w_g)
        return self.fc2(torch.tanh(h))

    def lattice(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """f (B, T, D), g (B, U + 1, P) -> logits (B, T, U + 1, V)."""
        return self(f[:, :, None, :], g[:, None, :, :])

    def pruned(self, f: torch.Tensor, g: torch.Tensor, starts: torch.Tensor, s: int) -> torch.Tensor:
        """f (B, T, D), g (B, U + 1, P), window starts (B, T) -> logits (B, T, s, V) of nodes
        (t, starts[b, t] + k), k < s (the pruned loss)."""
        b, t_max = starts.shape
        idx = (starts[..., None] + torch.arange(s, device=starts.device)).flatten(1)  # (B, T * s)
        g_nodes = g.gather(1, idx[..., None].expand(-1, -1, g.size(2))).view(b, t_max, s, g.size(2))
        return self(f[:, :, None, :], g_nodes)
