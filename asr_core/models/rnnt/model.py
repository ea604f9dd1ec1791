"""The transducer: it only composes an encoder (any :class:`Encoder`), prediction network and joint.

Legend: B batch, N mel bins, F feature frames, T encoder frames, U target tokens, V vocabulary.
"""

from __future__ import annotations

import torch
from torch import nn

from asr_core.models.encoder import Encoder
from asr_core.models.rnnt.config import RNNTConfig
from asr_core.models.rnnt.encoder import RNNTEncoder
from asr_core.models.rnnt.joint import Joint
from asr_core.models.rnnt.loss import lattice_nll, reduce_losses, rnnt_loss
from asr_core.models.rnnt.predictor import Predictor
from asr_core.models.rnnt.pruned_loss import node_occupancy, prune_ranges, pruned_nll, simple_lattice


class Transducer(nn.Module):
    """``forward(x, x_lens, y, y_lens) -> loss``; ``lattice`` for the logits."""

    kind = "transducer"  # the objective that trains and decodes it (a CTCModel's is "ctc")

    def __init__(
        self,
        encoder: Encoder,
        predictor: Predictor,
        joint: Joint,
        blank: int = 0,
        ctc_head: nn.Linear | None = None,
        ctc_weight: float = 0.0,
        simple_joint: tuple[nn.Linear, nn.Linear] | None = None,
        prune_range: int = 0,
        simple_loss_scale: float = 0.5,
    ) -> None:
        super().__init__()
        self.encoder, self.predictor, self.joint, self.blank = encoder, predictor, joint, blank
        self.num_outputs = joint.fc2.out_features
        self.ctc_head, self.ctc_weight = ctc_head, ctc_weight  # training aid only: decoding never reads it
        # The pruned loss's simple joint (encoder -> V, prediction -> V): training only, like the CTC head.
        if (simple_joint is None) != (prune_range == 0):
            raise ValueError("a pruned loss (prune_range > 0) needs the simple joint, and only it")
        self.simple_am, self.simple_lm = simple_joint if simple_joint is not None else (None, None)
        self.prune_range, self.simple_loss_scale = prune_range, simple_loss_scale

    def _encode(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder frames cut to the longest valid length: the loss wants T = max(f_lens), and a front
        end that pads frames (the CTC filterbank pads to a multiple of 16) leaves more."""
        f, f_lens = self.encoder(x, x_lens)
        return f[:, : int(f_lens.max()) if f_lens.numel() else 0], f_lens

    def lattice(self, x: torch.Tensor, x_lens: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, N, F) features, y (B, U) padded targets -> (logits (B, T, U + 1, V) fp32, T lengths).

        The encoder and prediction network run under whatever autocast is active; the joint
        and everything after it in fp32 (the loss needs it).
        """
        f, f_lens = self._encode(x, x_lens)
        g = self.predictor(y)
        with torch.autocast(f.device.type, enabled=False):
            return self.joint.lattice(f.float(), g.float()), f_lens

    def forward(
        self, x: torch.Tensor, x_lens: torch.Tensor, y: torch.Tensor, y_lens: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        """The RNN-T loss (plus ``ctc_weight`` x the auxiliary CTC loss when the model has that head)."""
        y = y[:, : int(y_lens.max()) if y_lens.numel() else 0]
        f, f_lens = self._encode(x, x_lens)
        g = self.predictor(y)
        with torch.autocast(f.device.type, enabled=False):
            f, g = f.float(), g.float()
            if self.prune_range > 0:
                loss = self._pruned_loss(f, f_lens, g, y, y_lens)
            else:
                loss = rnnt_loss(self.joint.lattice(f, g), f_lens, y, y_lens, self.blank, "none")
            if self.ctc_head is not None and self.ctc_weight > 0:
                lp = torch.log_softmax(self.ctc_head(f), dim=-1).transpose(0, 1)  # (T, B, V)
                ctc = nn.functional.ctc_loss(
                    lp, y, f_lens, y_lens, blank=self.blank, reduction="none", zero_infinity=True
                )
                loss = loss + self.ctc_weight * ctc
        return reduce_losses(loss, reduction)

    def _pruned_loss(self, f: torch.Tensor, f_lens: torch.Tensor, g: torch.Tensor, y: torch.Tensor,
                     y_lens: torch.Tensor) -> torch.Tensor:
        """Per utterance: the pruned loss plus ``simple_loss_scale`` x the simple joint's (see pruned_loss)."""
        blank_lp, y_lp = simple_lattice(self.simple_am(f), self.simple_lm(g), y, self.blank)
        simple = lattice_nll(blank_lp, y_lp, f_lens, y_lens)
        s = min(self.prune_range, g.size(1))
        starts = prune_ranges(node_occupancy(blank_lp, y_lp, f_lens, y_lens), f_lens, y_lens, s)
        pruned = pruned_nll(self.joint.pruned(f, g, starts, s), starts, f_lens, y, y_lens, self.blank)
        return pruned + self.simple_loss_scale * simple


def rnnt_model(cfg: RNNTConfig, num_outputs: int) -> Transducer:
    """Builder: the LSTM transducer of ``cfg`` (encoder and head shapes) over ``num_outputs`` tokens (blank 0)."""
    from asr_core.models.heads import attach_head, head_config

    return attach_head("transducer", RNNTEncoder(cfg), num_outputs, head_config("transducer", cfg))
