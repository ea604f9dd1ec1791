"""Pad a list of dataset items into a batch; drop and report the bad ones.

Shapes (B: utterances kept, T: samples, U: tokens):

- ``waves`` float32 (B, T_max), zero padded; ``wave_lens`` int64 (B,)
- ``tokens`` int64 (B, U_max), padded with ``pad_id``; ``token_lens`` int64 (B,)
- ``utt_ids`` list[str]; ``durations`` float32 (B,): manifest seconds (before augmentation)
- ``skipped`` list of ``(utt_id, reason)`` for the items dropped: a :class:`BadUtterance`
  returned by the dataset, or ``None`` (reported as ``(None, "item is None")``)

Every item may be bad: the batch is then empty (B = 0, T_max = U_max = 0) but still carries
``skipped``, so the loop can log the ids. The pad id only fills positions beyond
``token_lens``; 0 is a valid embedding index, so prediction networks can embed padded targets.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from asr_core.data.dataset import BadUtterance


def collate_batch(items: Sequence[dict[str, Any] | BadUtterance | None], pad_id: int = 0) -> dict[str, Any]:
    kept: list[dict[str, Any]] = []
    skipped: list[tuple[str | None, str]] = []
    for item in items:
        if item is None:
            skipped.append((None, "item is None"))
        elif isinstance(item, BadUtterance):
            skipped.append((item.utt_id, f"{item.reason} ({item.path})"))
        else:
            kept.append(item)

    n = len(kept)
    wave_lens = torch.tensor([len(it["wave"]) for it in kept], dtype=torch.long)
    token_lens = torch.tensor([len(it["tokens"]) for it in kept], dtype=torch.long)
    waves = torch.zeros(n, int(wave_lens.max()) if n else 0, dtype=torch.float32)
    tokens = torch.full((n, int(token_lens.max()) if n else 0), pad_id, dtype=torch.long)
    for i, it in enumerate(kept):
        w, y = it["wave"], it["tokens"]
        assert w.ndim == 1 and w.dtype == torch.float32, (it["utt_id"], w.dtype, tuple(w.shape))
        waves[i, : len(w)] = w
        tokens[i, : len(y)] = y
    return {
        "waves": waves,
        "wave_lens": wave_lens,
        "tokens": tokens,
        "token_lens": token_lens,
        "utt_ids": [it["utt_id"] for it in kept],
        "durations": torch.tensor([it["duration"] for it in kept], dtype=torch.float32),
        "skipped": skipped,
    }
