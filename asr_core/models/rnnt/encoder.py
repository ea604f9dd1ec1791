"""The uni-directional residual LayerNorm-LSTM encoder (edgedict ``ResLayerNormLSTM`` + ``Encoder``).

Legend: B batch, S stacked input frames, T' output frames, H hidden, D projection, L layers.
State: ``(h, c)``, each (L, B, H); None is zeros. Feeding an utterance in pieces with the
state carried gives the same outputs as feeding it whole, provided every piece but the
last has a multiple of ``time_reduction`` frames (the streaming chunks do).
"""

from __future__ import annotations

import torch
from torch import nn

from asr_core.models.encoder import Encoder
from asr_core.models.rnnt.config import RNNTConfig
from asr_core.models.rnnt.frontend import FrontEnd

State = tuple[torch.Tensor, torch.Tensor]


def time_reduce(x: torch.Tensor, x_lens: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of each ``factor`` consecutive frames; frames >= x_lens count as zeros (edgedict pads zeros)."""
    b, t, h = x.shape
    valid = torch.arange(t, device=x.device)[None, :] < x_lens[:, None]
    x = x.masked_fill(~valid[..., None], 0.0)
    x = nn.functional.pad(x, (0, 0, 0, factor - 1))
    x = x[:, : (t + factor - 1) // factor * factor]
    x = x.reshape(b, -1, factor, h).mean(dim=2)
    return x, torch.div(x_lens + factor - 1, factor, rounding_mode="floor")


class RNNTEncoder(Encoder):
    """``forward(x (B, N, F), x_lens) -> (y (B, T', D), y_lens)``; ``encode`` also takes and returns state."""

    streaming = True

    def __init__(self, cfg: RNNTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.output_dim, self.subsampling = cfg.enc_proj, cfg.subsampling
        self.frontend = FrontEnd(cfg.in_features, cfg.stack)
        n_in = cfg.in_features * cfg.stack
        self.lstms = nn.ModuleList(
            nn.LSTM(n_in if i == 0 else cfg.enc_hidden, cfg.enc_hidden, 1, batch_first=True)
            for i in range(cfg.enc_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.enc_hidden) for _ in range(cfg.enc_layers))
        self.dropout = nn.Dropout(cfg.dropout)
        self.proj = nn.Linear(cfg.enc_hidden, cfg.enc_proj)

    def zero_state(self, batch: int = 1, device: torch.device | str = "cpu", dtype=torch.float32) -> State:
        shape = (self.cfg.enc_layers, batch, self.cfg.enc_hidden)
        return torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype)

    def encode(self, s: torch.Tensor, s_lens: torch.Tensor, state: State | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """Normalised stacked frames (B, S, N*k) -> (y (B, T', D), y_lens, new state)."""
        h0, c0 = state if state is not None else self.zero_state(s.size(0), s.device, s.dtype)
        hs, cs = [], []
        x, lens = s, s_lens
        for i, (lstm, norm) in enumerate(zip(self.lstms, self.norms)):
            out, (h, c) = lstm(x, (h0[i: i + 1].to(x.dtype), c0[i: i + 1].to(x.dtype)))
            x = norm(out if i == 0 else x + out)
            x = self.dropout(x)
            if i == self.cfg.time_reduction_layer:
                x, lens = time_reduce(x, lens, self.cfg.time_reduction)
            hs.append(h)
            cs.append(c)
        return self.proj(x), lens, (torch.cat(hs), torch.cat(cs))

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, s_lens = self.frontend(x, x_lens)
        y, y_lens, _ = self.encode(s, s_lens)
        return y, y_lens

    def output_lengths(self, x_lens: torch.Tensor) -> torch.Tensor:
        n = torch.div(x_lens + self.cfg.stack - 1, self.cfg.stack, rounding_mode="floor")
        if self.cfg.time_reduction_layer >= 0:
            r = self.cfg.time_reduction
            n = torch.div(n + r - 1, r, rounding_mode="floor")
        return n
