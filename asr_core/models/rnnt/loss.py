"""The transducer loss, -log P(y | x) summed over all alignments (Graves 2012), blank 0.

Two implementations of the same function (``torchaudio.functional.rnnt_loss`` with its default
fused log-softmax): torchaudio's kernel, used on CUDA, and :func:`lattice_rnnt_loss`, used on the
CPU. On a 2-core CPU torchaudio's kernel took ~300 of the ~430 ms of a training step of the CPU
profile (8 utterances of 4 s, 256 outputs); the tensor version takes a fraction of that
(RESULTS.md, "RNN-T default profile"), because everything over the (B, T, U + 1, V) lattice is one
multi-threaded op (a log-sum-exp over V and two gathers) and only the (B, U + 1) forward variables
go through the loop over T.

The recursion, per frame t over all u at once: with ``a = alpha[t-1] + blank[t-1]`` and ``C[u]`` the
sum of the first u target log-probabilities at frame t,

    alpha[t, u] = logaddexp(a[u], alpha[t, u-1] + y[t, u-1]) = C[u] + logcumsumexp(a - C)[u],

autograd giving the gradients. The forward variables are kept in float64 (C is a long sum).
"""

from __future__ import annotations

import torch
import torchaudio


def lattice_rnnt_loss(logits: torch.Tensor, logit_lens: torch.Tensor, targets: torch.Tensor,
                      target_lens: torch.Tensor, blank: int = 0) -> torch.Tensor:
    """logits (B, T, U + 1, V), targets (B, U) padded -> per-utterance loss (B,) (see the module doc)."""
    b, t_max, u1, _ = logits.shape
    logits = logits.float()
    lse = torch.logsumexp(logits, dim=-1)  # (B, T, U + 1)
    blank_lp = logits[..., blank] - lse
    idx = targets.long()[:, None, :, None].expand(b, t_max, u1 - 1, 1)
    y_lp = logits[:, :, :-1].gather(3, idx).squeeze(3) - lse[:, :, :-1]  # (B, T, U)
    return lattice_nll(blank_lp, y_lp, logit_lens, target_lens)


def lattice_nll(blank_lp: torch.Tensor, y_lp: torch.Tensor, logit_lens: torch.Tensor,
                target_lens: torch.Tensor) -> torch.Tensor:
    """-log P(y | x) from the lattice's arc log-probabilities -> (B,) fp32.

    ``blank_lp`` (B, T, U + 1): the blank at node (t, u); ``y_lp`` (B, T, U): the token y[u] at (t, u).
    Nodes outside what an utterance may use need no masking (its loss reads alpha at its own last
    frame and target count); a lattice restricted to some nodes gives the others a large negative
    log-probability (the pruned loss does).
    """
    b, t_max, _ = blank_lp.shape
    blank_lp, y_lp = blank_lp.double(), y_lp.double()
    c = torch.cat([y_lp.new_zeros(b, t_max, 1), y_lp.cumsum(dim=2)], dim=2)  # (B, T, U + 1)
    alpha = c[:, 0]
    alphas = [alpha]
    for t in range(1, t_max):
        ct = c[:, t]
        alpha = ct + torch.logcumsumexp(alpha + blank_lp[:, t - 1] - ct, dim=1)
        alphas.append(alpha)
    last_t = (logit_lens.long() - 1).clamp(min=0)
    rows = torch.arange(b, device=blank_lp.device)
    u = target_lens.long()
    final = torch.stack(alphas, dim=1)[rows, last_t, u] + blank_lp[rows, last_t, u]
    return (-final).float()


def rnnt_loss(logits: torch.Tensor, logit_lens: torch.Tensor, targets: torch.Tensor, target_lens: torch.Tensor,
              blank: int = 0, reduction: str = "mean") -> torch.Tensor:
    """logits (B, T, U + 1, V) (cast to fp32 here), targets (B, U) padded -> the loss.

    ``reduction``: ``mean`` (over utterances; what the engine wants), ``sum`` or ``none``.
    """
    assert logits.ndim == 4 and logits.size(2) == targets.size(1) + 1, (logits.shape, targets.shape)
    reduce_losses(logits.new_zeros(0), reduction)  # a bad reduction fails before any work
    if logits.is_cuda:
        return torchaudio.functional.rnnt_loss(
            logits.float(), targets.int(), logit_lens.int(), target_lens.int(), blank=blank, reduction=reduction)
    return reduce_losses(lattice_rnnt_loss(logits, logit_lens, targets, target_lens, blank), reduction)


def reduce_losses(losses: torch.Tensor, reduction: str) -> torch.Tensor:
    """Per-utterance losses (B,) -> ``mean`` (over utterances), ``sum``, or ``none`` (as they are)."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be mean, sum or none, got {reduction!r}")
    return losses.mean() if reduction == "mean" else losses.sum() if reduction == "sum" else losses
