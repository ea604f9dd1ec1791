"""The prediction network: Embedding -> LSTM -> Linear (edgedict ``Decoder``).

Legend: B batch, U tokens, P output dim. The sequence starts from the blank id (0), which
doubles as the start symbol. State ``(h, c)``, each (layers, B, P_h); None is zeros.
"""

from __future__ import annotations

import torch
from torch import nn

State = tuple[torch.Tensor, torch.Tensor]


class Predictor(nn.Module):
    """``cfg``: a :class:`~asr_core.models.heads.TransducerHeadConfig` (or a config with its fields)."""

    def __init__(self, cfg, vocab_size: int, blank: int = 0) -> None:
        super().__init__()
        self.cfg, self.blank = cfg, blank
        self.output_dim = cfg.pred_proj
        self.embed = nn.Embedding(vocab_size, cfg.embed_dim)
        self.lstm = nn.LSTM(cfg.embed_dim, cfg.pred_hidden, cfg.pred_layers, batch_first=True)
        self.proj = nn.Linear(cfg.pred_hidden, cfg.pred_proj)

    def zero_state(self, batch: int = 1, device: torch.device | str = "cpu", dtype=torch.float32) -> State:
        shape = (self.cfg.pred_layers, batch, self.cfg.pred_hidden)
        return torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype)

    def step(self, y: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """(B, U) token ids (fed as they are) -> (g (B, U, P), new state)."""
        out, state = self.lstm(self.embed(y), state)
        return self.proj(out), state

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """(B, U) targets -> (B, U + 1, P): outputs after the start symbol and after each target."""
        start = torch.full((y.size(0), 1), self.blank, dtype=y.dtype, device=y.device)
        return self.step(torch.cat([start, y], dim=1))[0]
