"""Span masking and negative sampling, one utterance at a time.

fairseq's ``compute_mask_indices`` makes every row of a batch mask the same number of frames
(the batch minimum) and samples negatives with batch-shaped draws, so an utterance's mask and
loss depend on its batch mates. Here every draw is made per utterance from that utterance's
own generator (seeded by the caller, e.g. from (seed, epoch, utt_id)), over its own valid
frames: its masks, negatives and Gumbel noise are the same alone or in any padded batch
(DLE's "does not change batch-dependent constants"). Masks never touch padding, and negatives
come from the same utterance's masked frames only.
"""

from __future__ import annotations

import torch


def span_mask(length: int, mask_prob: float, mask_length: int, *, min_masks: int = 0,
              generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """(length,) bool: ``int(mask_prob * length / mask_length + U[0, 1))`` span starts (at least
    ``min_masks``) drawn without replacement from ``[0, length - mask_length]``, each masking
    ``mask_length`` frames (spans may overlap), as fairseq's ``compute_mask_indices("static")``."""
    mask = torch.zeros(length, dtype=torch.bool, device=device)
    if length <= 0 or mask_prob <= 0:
        return mask
    u = float(torch.rand((), generator=generator, device=device))
    num = max(min_masks, int(mask_prob * length / mask_length + u))
    span = mask_length
    if length - span <= num:  # fairseq: shorten the spans of a short utterance
        span = max(1, length - num - 1)
    room = max(1, length - span + 1)
    num = min(num, room)
    if num == 0:
        return mask
    starts = torch.randperm(room, generator=generator, device=device)[:num]
    idx = (starts[:, None] + torch.arange(span, device=device)[None, :]).reshape(-1).clamp(max=length - 1)
    mask[idx] = True
    return mask


def batch_span_masks(lens: torch.Tensor, size: int, mask_prob: float, mask_length: int, *, min_masks: int = 0,
                     generators: list[torch.Generator | None] | None = None) -> torch.Tensor:
    """(B, size) bool masks, one :func:`span_mask` per row over its valid ``lens[b]`` frames."""
    out = torch.zeros(len(lens), size, dtype=torch.bool, device=lens.device)
    for b, n in enumerate(lens.tolist()):
        g = generators[b] if generators is not None else None
        out[b, :n] = span_mask(n, mask_prob, mask_length, min_masks=min_masks, generator=g, device=lens.device)
    return out


def channel_masks(batch: int, channels: int, mask_prob: float, mask_length: int,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """(B, C) bool: per utterance, spans of feature channels masked over all its frames (fine-tuning)."""
    out = torch.zeros(batch, channels, dtype=torch.bool, device=device)
    for b in range(batch):
        out[b] = span_mask(channels, mask_prob, mask_length, device=device)
    return out


def sample_negatives(counts: list[int], num_negatives: int, generators: list[torch.Generator | None] | None = None,
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """Indices of negatives into the concatenated masked frames, (sum(counts), K) int64.

    Utterance b owns rows ``[offset_b, offset_b + counts[b])``; each of its targets gets K
    indices drawn uniformly (with replacement) among the utterance's *other* masked frames
    (fairseq: from the same utterance, never the target itself). Needs counts[b] >= 2.
    """
    out, offset = [], 0
    for b, m in enumerate(counts):
        if m < 2:
            raise ValueError(f"utterance {b} has {m} masked frame(s): a target needs at least one other as negative")
        g = generators[b] if generators is not None else None
        neg = torch.randint(0, m - 1, (m, num_negatives), generator=g, device=device)
        self_idx = torch.arange(m, device=device)[:, None]
        neg = neg + (neg >= self_idx).long()  # skip the target itself
        out.append(neg + offset)
        offset += m
    if not out:
        return torch.zeros(0, num_negatives, dtype=torch.long, device=device)
    return torch.cat(out)
