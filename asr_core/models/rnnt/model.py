"""The RNN-Transducer: it only composes the encoder, prediction network and joint.

Legend: B batch, N mel bins, F feature frames, T encoder frames, U target tokens, V vocabulary.
"""

from __future__ import annotations

import torch
from torch import nn

from asr_core.models.rnnt.config import RNNTConfig
from asr_core.models.rnnt.encoder import RNNTEncoder
from asr_core.models.rnnt.joint import Joint
from asr_core.models.rnnt.loss import rnnt_loss
from asr_core.models.rnnt.predictor import Predictor


class Transducer(nn.Module):
    """``forward(x, x_lens, y, y_lens) -> loss``; ``lattice`` for the logits."""

    transducer = True  # what the stages dispatch on (a CTCModel has no such attribute)

    def __init__(self, encoder: RNNTEncoder, predictor: Predictor, joint: Joint, blank: int = 0) -> None:
        super().__init__()
        self.encoder, self.predictor, self.joint, self.blank = encoder, predictor, joint, blank
        self.num_outputs = joint.fc2.out_features

    def lattice(self, x: torch.Tensor, x_lens: torch.Tensor, y: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, N, F) features, y (B, U) padded targets -> (logits (B, T, U + 1, V) fp32, T lengths).

        The encoder and prediction network run under whatever autocast is active; the joint
        and everything after it in fp32 (the loss needs it).
        """
        f, f_lens = self.encoder(x, x_lens)
        g = self.predictor(y)
        with torch.autocast(f.device.type, enabled=False):
            return self.joint.lattice(f.float(), g.float()), f_lens

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor, y: torch.Tensor, y_lens: torch.Tensor,
                reduction: str = "mean") -> torch.Tensor:
        logits, f_lens = self.lattice(x, x_lens, y[:, : int(y_lens.max()) if y_lens.numel() else 0])
        with torch.autocast(logits.device.type, enabled=False):
            return rnnt_loss(logits, f_lens, y[:, : logits.size(2) - 1], y_lens, self.blank, reduction)


def rnnt_model(cfg: RNNTConfig, num_outputs: int) -> Transducer:
    """Builder: a transducer of ``cfg`` over ``num_outputs`` tokens (blank 0)."""
    enc = RNNTEncoder(cfg)
    return Transducer(enc, Predictor(cfg, num_outputs), Joint(cfg.enc_proj, cfg.pred_proj, cfg.joint_dim,
                                                               num_outputs))
