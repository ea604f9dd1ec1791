"""The pruned transducer loss (Kuang et al. 2022, "Pruned RNN-T for fast, memory-efficient ASR
training"; icefall's ``pruned_transducer_stateless`` recipes), on the CPU with tensor ops.

The full loss runs the joint network on every (t, u) node of the (B, T, U + 1) lattice: on the CPU
profile that joint is most of a training step. The pruned loss runs it on ``s`` nodes per frame:

1. A *simple* joint, ``am[t] + lm[u]`` (two training-only Linear layers to V), whose lattice costs
   one (B, T, V) x (B, V, U + 1) product for its normaliser. Its loss is trained too, and the
   gradient of that loss with respect to its arc log-probabilities is minus each arc's posterior
   occupancy, hence each node's.
2. Per frame the window of ``s`` consecutive u holding the most occupancy (:func:`prune_ranges`),
   adjusted so that the windows chain into paths from (0, 0) to (T - 1, U).
3. The real joint on those (B, T, s) nodes only; its arc log-probabilities are scattered into the
   (B, T, U + 1) lattice, every other node getting ``NEG`` (no path through it counts), and the
   same recursion as the full loss (:func:`~asr_core.models.rnnt.loss.lattice_nll`) gives the loss.

The pruned loss only ever sums fewer paths than the full loss, so it bounds it from above; with
the windows on the paths that carry the probability the two agree (tests check both).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from asr_core.models.rnnt.loss import lattice_nll

NEG = -1.0e4  # the log-probability of an arc outside the pruned lattice: exp(NEG) is 0 in float64


def simple_lattice(am: torch.Tensor, lm: torch.Tensor, targets: torch.Tensor,
                   blank: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The simple joint's arc log-probabilities: am (B, T, V), lm (B, U + 1, V), targets (B, U) ->
    (blank (B, T, U + 1), token (B, T, U)), normalised over V at each node.

    log sum_v exp(am[t, v] + lm[u, v]) is one batched product of the two exponentials (each shifted
    by its own maximum), in float64 so that a node whose two halves disagree does not underflow.
    """
    am, lm = am.double(), lm.double()
    am_max = am.max(dim=-1, keepdim=True).values.detach()  # (B, T, 1)
    lm_max = lm.max(dim=-1, keepdim=True).values.detach()  # (B, U + 1, 1)
    prod = torch.bmm((am - am_max).exp(), (lm - lm_max).exp().transpose(1, 2))  # (B, T, U + 1)
    lse = prod.clamp(min=1e-300).log() + am_max + lm_max.transpose(1, 2)
    blank_lp = am[..., blank, None] + lm[..., blank][:, None, :] - lse
    y = targets.long()
    t_max = am.size(1)
    am_y = am.gather(2, y[:, None, :].expand(-1, t_max, -1))  # (B, T, U)
    lm_y = lm[:, :-1].gather(2, y[..., None]).squeeze(2)  # (B, U)
    return blank_lp, am_y + lm_y[:, None, :] - lse[:, :, :-1]


def node_occupancy(blank_lp: torch.Tensor, y_lp: torch.Tensor, logit_lens: torch.Tensor,
                   target_lens: torch.Tensor) -> torch.Tensor:
    """Posterior occupancy (B, T, U + 1) of each lattice node: minus the gradient of the lattice's
    loss with respect to the arcs leaving it (every path leaves a node by its blank or its token).
    Computed on detached copies, so it works under ``no_grad`` and adds nothing to the graph."""
    with torch.enable_grad():
        blank_lp = blank_lp.detach().requires_grad_()
        y_lp = y_lp.detach().requires_grad_()
        loss = lattice_nll(blank_lp, y_lp, logit_lens, target_lens)
        g_blank, g_y = torch.autograd.grad(loss.sum(), (blank_lp, y_lp))
    return -(g_blank + F.pad(g_y, (0, 1)))


def prune_ranges(occupancy: torch.Tensor, logit_lens: torch.Tensor, target_lens: torch.Tensor,
                 s: int) -> torch.Tensor:
    """The first u of each frame's window of ``s`` nodes -> (B, T) int64.

    Each frame takes the window of largest occupancy, then: no window reaches past U (per
    utterance); frame 0 starts at u = 0 and the last frame's window holds U; windows never move
    back; and a window starts at most ``s - 1`` after the one before, so a blank from the last
    node of a window lands inside the next (a window too far ahead is lowered, then windows the
    end cannot be reached from are raised: frame 0 is raised off u = 0 only where no chain exists).
    """
    b, t_max, u1 = occupancy.shape
    if not 1 <= s <= u1:
        raise ValueError(f"prune range must be in [1, U + 1 = {u1}], got {s}")
    cs = F.pad(occupancy.cumsum(dim=2), (1, 0))  # (B, T, U + 2)
    start = (cs[..., s:] - cs[..., :-s]).argmax(dim=2)  # (B, T): windows start at 0 .. U + 1 - s
    hi = (target_lens.long() + 1 - s).clamp(min=0)[:, None]  # (B, 1)
    last = (logit_lens.long() - 1).clamp(min=0)[:, None]
    tt = torch.arange(t_max, device=occupancy.device)[None]
    step = tt * (s - 1)
    start = torch.minimum(start, hi)
    start[:, 0] = 0
    start = torch.cummax(start, dim=1).values  # never back
    start = torch.cummin(start - step, dim=1).values + step  # lower a window that jumps too far ahead
    start = torch.where(tt >= last, hi, start)  # the end: its window holds U (hi is the largest start)
    return (start - step).flip(1).cummax(dim=1).values.flip(1) + step  # raise windows the end cannot reach


def pruned_nll(logits: torch.Tensor, starts: torch.Tensor, logit_lens: torch.Tensor, targets: torch.Tensor,
               target_lens: torch.Tensor, blank: int = 0) -> torch.Tensor:
    """logits (B, T, s, V) of the nodes ``starts[b, t] + k`` -> per-utterance loss (B,) fp32.

    An utterance whose windows cannot chain from (0, 0) (more than ``s - 1`` tokens per frame on
    average) has no path: its loss is 0 here and the simple loss alone trains it.
    """
    b, t_max, s, _ = logits.shape
    u1 = targets.size(1) + 1
    logits = logits.float()
    lse = torch.logsumexp(logits, dim=-1)  # (B, T, s)
    idx = starts[..., None] + torch.arange(s, device=logits.device)  # (B, T, s)
    y_pad = F.pad(targets.long(), (0, 1))  # the token of node u (padding at u = U)
    y_idx = y_pad.gather(1, idx.flatten(1)).view(b, t_max, s)
    blank_pr = (logits[..., blank] - lse).double()
    y_pr = (logits.gather(3, y_idx[..., None]).squeeze(3) - lse).double()
    y_pr = torch.cat([y_pr[..., :-1], y_pr.new_full((b, t_max, 1), NEG)], dim=2)  # no token out of the window
    blank_full = blank_pr.new_full((b, t_max, u1), NEG).scatter(2, idx, blank_pr)
    y_full = y_pr.new_full((b, t_max, u1), NEG).scatter(2, idx, y_pr)[..., :-1]
    loss = lattice_nll(blank_full, y_full, logit_lens, target_lens)
    feasible = starts[:, 0] == 0
    return torch.where(feasible, loss, torch.zeros_like(loss))
