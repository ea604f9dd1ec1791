"""CTC head, the encoder + head model, the CTC loss and greedy decoding.

The blank is the LAST output (index V - 1, 28 for the 29-symbol character
vocabulary), as in DLE and NeMo.

    B: batch, T: encoder frames, D: encoder output dim, V: outputs incl. blank,
    S: padded target length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from asr_core.models.encoder import Encoder


class CTCHead(nn.Module):
    """Linear map D -> V followed by log-softmax.

    The weight is held by a 1x1 ``nn.Conv1d`` in ``layers.0`` (shape (V, D, 1)) so
    DLE's ``decoder.layers.0.*`` and NeMo's ``decoder.decoder_layers.0.*`` load
    unchanged; it is applied as a linear map over (B, T, D), which is the same
    computation without transposing back to channel-first.
    """

    def __init__(self, in_dim: int, num_outputs: int) -> None:
        super().__init__()
        if num_outputs < 2:
            raise ValueError(f"a CTC head needs at least one label and the blank, got num_outputs={num_outputs}")
        self.num_outputs = num_outputs
        self.layers = nn.Sequential(nn.Conv1d(in_dim, num_outputs, kernel_size=1, bias=True))
        nn.init.xavier_uniform_(self.layers[0].weight, gain=1.0)  # DLE init; bias keeps torch's default

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """y: (B, T, D) -> log-probs (B, T, V), always float32.

        The log-softmax runs in float32 whatever the autocast dtype: CUDA autocast
        does so on its own, CPU bf16 autocast would otherwise keep ~3 significant
        digits in the log-probs the CTC loss and beam search consume.
        """
        conv = self.layers[0]
        return F.linear(y, conv.weight.squeeze(-1), conv.bias).float().log_softmax(dim=-1)


class CTCModel(nn.Module):
    """``encoder`` then CTC head; the head is stored as ``decoder`` (DLE/NeMo naming).

    ``forward(x, x_lens) -> (log_probs (B, T', V), log_prob_lens (B,))`` with x as
    the encoder takes it, e.g. (B, 64, T) features for QuartzNet and Jasper.
    """

    kind = "ctc"  # the objective that trains and decodes it (a Transducer's is "transducer")

    def __init__(self, encoder: Encoder, head: CTCHead) -> None:
        super().__init__()
        if head.layers[0].in_channels != encoder.output_dim:
            raise ValueError(f"head expects D={head.layers[0].in_channels}, encoder gives {encoder.output_dim}")
        self.encoder = encoder
        self.decoder = head

    @property
    def num_outputs(self) -> int:
        return self.decoder.num_outputs

    @property
    def blank(self) -> int:
        return self.decoder.num_outputs - 1

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, y_lens = self.encoder(x, x_lens)
        return self.decoder(y), y_lens


def ctc_loss(
    log_probs: torch.Tensor,
    log_prob_lens: torch.Tensor,
    targets: torch.Tensor,
    target_lens: torch.Tensor,
    *,
    blank: int | None = None,
    reduction: str = "mean",
    zero_infinity: bool = True,
) -> torch.Tensor:
    """CTC loss on batch-first log-probs with the blank last.

    Args:
        log_probs: (B, T, V) log-softmax outputs; computed in float32 whatever
            their dtype (AMP-safe).
        log_prob_lens: (B,) valid frames.
        targets: (B, S) padded label ids (padding ignored) or (sum(target_lens),)
            concatenated; must not contain the blank.
        target_lens: (B,).
        blank: defaults to V - 1.
        reduction: "mean" averages the per-utterance losses over the batch (DLE's
            ``CTCLossNM``; unlike ``torch.nn.CTCLoss``'s "mean" it does not divide
            by target length), "sum", or "none" for the (B,) losses.
        zero_infinity: an utterance whose labels cannot be aligned in its frames
            (it needs len(target) + number of adjacent repeated labels <= T') has
            infinite loss. With True (default, as NeMo) it contributes loss 0 and
            gradient 0 instead of turning the whole batch's gradient into NaN;
            with False (DLE) the returned loss is inf. Either way such utterances
            teach nothing: the data pipeline should drop them using the encoder's
            ``output_lengths``; use reduction="none" to spot them (exact zeros).
    """
    assert log_probs.ndim == 3, log_probs.shape
    blank = log_probs.size(-1) - 1 if blank is None else blank
    losses = F.ctc_loss(
        log_probs.transpose(0, 1).float(),
        targets,
        log_prob_lens,
        target_lens,
        blank=blank,
        reduction="none",
        zero_infinity=zero_infinity,
    )
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    if reduction == "none":
        return losses
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int | None = None) -> list[list[int]]:
    """Best-path decoding: argmax per frame, collapse repeats, drop blanks.

    log_probs: (B, T, V) (any scores; only the argmax matters), lengths: (B,).
    Returns one list of label ids per utterance; frames past its length are ignored.
    """
    assert log_probs.ndim == 3, log_probs.shape
    blank = log_probs.size(-1) - 1 if blank is None else blank
    ids = log_probs.argmax(dim=-1)  # (B, T)
    keep = ids != blank
    keep[:, 1:] &= ids[:, 1:] != ids[:, :-1]
    return [
        [i for i, k in zip(row[:n], kept[:n]) if k]
        for row, kept, n in zip(ids.tolist(), keep.tolist(), lengths.tolist())
    ]
