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

    kind = "transducer"  # the objective that trains and decodes it (a CTCModel's is "ctc")

    def __init__(self, encoder: RNNTEncoder, predictor: Predictor, joint: Joint, blank: int = 0,
                 ctc_head: nn.Linear | None = None, ctc_weight: float = 0.0) -> None:
        super().__init__()
        self.encoder, self.predictor, self.joint, self.blank = encoder, predictor, joint, blank
        self.num_outputs = joint.fc2.out_features
        self.ctc_head, self.ctc_weight = ctc_head, ctc_weight  # training aid only: decoding never reads it

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
        """The RNN-T loss (plus ``ctc_weight`` x the auxiliary CTC loss when the model has that head)."""
        y = y[:, : int(y_lens.max()) if y_lens.numel() else 0]
        f, f_lens = self.encoder(x, x_lens)
        g = self.predictor(y)
        with torch.autocast(f.device.type, enabled=False):
            loss = rnnt_loss(self.joint.lattice(f.float(), g.float()), f_lens, y, y_lens, self.blank, reduction)
            if self.ctc_head is not None and self.ctc_weight > 0:
                lp = torch.log_softmax(self.ctc_head(f.float()), dim=-1).transpose(0, 1)  # (T, B, V)
                ctc = nn.functional.ctc_loss(lp, y, f_lens, y_lens, blank=self.blank, reduction="none",
                                             zero_infinity=True)
                ctc = ctc.mean() if reduction == "mean" else ctc.sum() if reduction == "sum" else ctc
                loss = loss + self.ctc_weight * ctc
        return loss


def rnnt_model(cfg: RNNTConfig, num_outputs: int) -> Transducer:
    """Builder: a transducer of ``cfg`` over ``num_outputs`` tokens (blank 0)."""
    enc, pred = RNNTEncoder(cfg), Predictor(cfg, num_outputs)
    joint = Joint(cfg.enc_proj, cfg.pred_proj, cfg.joint_dim, num_outputs)
    ctc = nn.Linear(cfg.enc_proj, num_outputs) if cfg.ctc_weight > 0 else None  # last: the rest inits alike
    return Transducer(enc, pred, joint, ctc_head=ctc, ctc_weight=cfg.ctc_weight)
