"""The stateless prediction network (Ghodsi et al. 2020; icefall's ``Decoder``): the last few tokens only.

Legend: B batch, U tokens, C context size, E embedding, P output dim. The output after a token
depends on that token and the C - 1 before it (blank, the start symbol, before the first):
``Embedding -> depthwise Conv1d over the C tokens -> ReLU -> Linear(E -> P)``. With no recurrence
it cannot carry a long-range language model, so the joint has to read the encoder to lower the
loss from the first steps; an LSTM predictor can lower it by modelling the text alone first.

State: ``(context,)``, context (1, B, C - 1) the previous token ids (int64), shaped like an LSTM
state (batch on dim 1) so the decoders merge and split it the same way.
"""

from __future__ import annotations

import torch
from torch import nn

State = tuple[torch.Tensor]


class StatelessPredictor(nn.Module):
    """``cfg``: a :class:`~asr_core.models.heads.TransducerHeadConfig` (``embed_dim``, ``context_size``,
    ``pred_proj``)."""

    def __init__(self, cfg, vocab_size: int, blank: int = 0) -> None:
        super().__init__()
        self.cfg, self.blank, self.context = cfg, blank, cfg.context_size
        self.output_dim = cfg.pred_proj
        self.embed = nn.Embedding(vocab_size, cfg.embed_dim)
        # depthwise in groups of 4 channels, as icefall's (a full conv would be C x E^2 weights)
        groups = cfg.embed_dim // 4 if cfg.embed_dim % 4 == 0 else 1
        self.conv = nn.Conv1d(cfg.embed_dim, cfg.embed_dim, self.context, groups=groups, bias=False)
        self.proj = nn.Linear(cfg.embed_dim, cfg.pred_proj)

    def zero_state(self, batch: int = 1, device: torch.device | str = "cpu", dtype=None) -> State:
        return (torch.full((1, batch, self.context - 1), self.blank, dtype=torch.long, device=device),)

    def _window(self, y: torch.Tensor) -> torch.Tensor:
        """(B, C + n - 1) token ids -> (B, n, P): one output per window of C consecutive tokens."""
        e = self.embed(y).transpose(1, 2)  # (B, E, C + n - 1)
        return self.proj(torch.relu(self.conv(e)).transpose(1, 2))

    def step(self, y: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """(B, n) token ids after ``state`` -> (g (B, n, P), new state)."""
        ctx = state[0][0] if state is not None else self.zero_state(y.size(0), y.device)[0][0]
        seq = torch.cat([ctx, y], dim=1)
        return self._window(seq), (seq[:, seq.size(1) - (self.context - 1):][None],)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """(B, U) targets -> (B, U + 1, P): outputs after the start symbol and after each target."""
        start = torch.full((y.size(0), self.context), self.blank, dtype=y.dtype, device=y.device)
        return self._window(torch.cat([start, y], dim=1))
