"""Pad a list of dataset items into a batch, drop and report the bad ones; compute the model input.

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

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from asr_core.data.dataset import BadUtterance


def _partition(items: Sequence[dict[str, Any] | BadUtterance | None]) -> tuple[list[dict], list[tuple]]:
    """(usable items, ``(utt_id, reason)`` of the dropped ones)."""
    kept: list[dict[str, Any]] = []
    skipped: list[tuple[str | None, str]] = []
    for item in items:
        if item is None:
            skipped.append((None, "item is None"))
        elif isinstance(item, BadUtterance):
            skipped.append((item.utt_id, f"{item.reason} ({item.path})"))
        else:
            kept.append(item)
    return kept, skipped


def _labels(kept: list[dict[str, Any]], skipped: list[tuple], pad_id: int) -> dict[str, Any]:
    """The keys every batch has besides its audio: padded tokens, ids, durations, what was skipped."""
    token_lens = torch.tensor([len(it["tokens"]) for it in kept], dtype=torch.long)
    tokens = torch.full((len(kept), int(token_lens.max()) if kept else 0), pad_id, dtype=torch.long)
    for i, it in enumerate(kept):
        tokens[i, : len(it["tokens"])] = it["tokens"]
    return {
        "tokens": tokens,
        "token_lens": token_lens,
        "utt_ids": [it["utt_id"] for it in kept],
        "durations": torch.tensor([it["duration"] for it in kept], dtype=torch.float32),
        "skipped": skipped,
    }


def collate_batch(items: Sequence[dict[str, Any] | BadUtterance | None], pad_id: int = 0) -> dict[str, Any]:
    kept, skipped = _partition(items)
    n = len(kept)
    wave_lens = torch.tensor([len(it["wave"]) for it in kept], dtype=torch.long)
    waves = torch.zeros(n, int(wave_lens.max()) if n else 0, dtype=torch.float32)
    for i, it in enumerate(kept):
        w = it["wave"]
        assert w.ndim == 1 and w.dtype == torch.float32, (it["utt_id"], w.dtype, tuple(w.shape))
        waves[i, : len(w)] = w
    return {"waves": waves, "wave_lens": wave_lens, **_labels(kept, skipped, pad_id)}


def collate_features(items: Sequence[dict[str, Any] | BadUtterance | None], pad_id: int = 0) -> dict[str, Any]:
    """Items of precomputed features (:class:`~asr_core.data.feature_cache.FeatureCache`: ``feats``
    (C, F), ``seconds``) -> a batch as :class:`FeatureCollate` makes it: ``feats`` (B, C, F_max) zero
    padded (as the filterbank pads), ``feat_lens``, ``audio_seconds`` and :func:`collate_batch`'s keys
    less the waveforms."""
    kept, skipped = _partition(items)
    feat_lens = torch.tensor([it["feats"].size(1) for it in kept], dtype=torch.long)
    dim = kept[0]["feats"].size(0) if kept else 0
    feats = torch.zeros(len(kept), dim, int(feat_lens.max()) if kept else 0, dtype=torch.float32)
    for i, it in enumerate(kept):
        feats[i, :, : it["feats"].size(1)] = it["feats"]
    seconds = float(sum(it["seconds"] for it in kept))
    return {"feats": feats, "feat_lens": feat_lens, **_labels(kept, skipped, pad_id), "audio_seconds": seconds}


def batch_seed(seed: int, epoch: int, utt_ids: Iterable[str]) -> int:
    """The seed of a batch's augmentation: a hash of (run seed, epoch, its utterance ids), so a
    batch gets the same draws whatever the number of workers and after a resume."""
    h = hashlib.blake2b(f"{seed}:{epoch}:".encode(), digest_size=8)
    h.update("\x00".join(utt_ids).encode())
    return int.from_bytes(h.digest(), "little") & (2**63 - 1)


class FeatureCollate:
    """Items -> a batch with the model's input: ``feats`` and ``feat_lens`` beside :func:`collate_batch`'s
    keys (less the waveforms), ``audio_seconds``.

    ``frontend``: a front-end module of :mod:`asr_core.features.frontends` (run in eval mode: the
    dither is added here, seeded). ``train``: dither and ``spec_augment``, drawn from a generator
    seeded by :func:`batch_seed`. ``keep_waves``: the padded waveforms too (``waves``, ``wave_lens``).
    The collate runs in the loader workers, so the features are computed off the training process.
    ``cached``: the items already hold their features (a :class:`~asr_core.data.feature_cache.FeatureCache`
    dataset): they are padded, and only SpecAugment is drawn here.
    """

    def __init__(
        self,
        frontend: nn.Module,
        spec_augment=None,
        train: bool = False,
        seed: int = 0,
        dataset=None,
        keep_waves: bool = False,
        cached: bool = False,
    ) -> None:
        from asr_core.features import SpecAugment

        if cached and keep_waves:
            raise ValueError("FeatureCollate: cached features carry no waveforms to keep")
        self.features = frontend.eval()
        self.keep_waves, self.cached = keep_waves, cached
        self.dither = float(getattr(frontend.cfg, "dither", 0.0)) if train else 0.0
        self.specaug = SpecAugment(spec_augment).train() if (train and spec_augment is not None) else None
        self.sample_rate, self.seed, self.dataset = frontend.cfg.sample_rate, seed, dataset

    @torch.no_grad()
    def __call__(self, items) -> dict[str, Any]:
        if self.cached:
            return self._from_features(items)
        b = collate_batch(items)
        waves, wave_lens = b.pop("waves"), b.pop("wave_lens")
        if self.keep_waves:
            b.update(waves=waves, wave_lens=wave_lens)
        if waves.size(0) and (self.dither > 0 or self.specaug is not None):
            epoch = self.dataset.epoch if self.dataset is not None else 0
            g = torch.Generator().manual_seed(batch_seed(self.seed, epoch, b["utt_ids"]))
            if self.dither > 0:
                waves = waves + self.dither * torch.randn(waves.shape, generator=g)
            if self.specaug is not None:
                self.specaug.generator = g
        if waves.size(0):
            feats, feat_lens = self.features(waves, wave_lens)
            if self.specaug is not None:
                feats = self.specaug(feats, feat_lens)
        else:
            dim = self.features.feature_dim
            feats = torch.zeros(0, dim, 0) if dim is not None else torch.zeros(0, 0)
            feat_lens = torch.zeros(0, dtype=torch.long)
        b.update(feats=feats, feat_lens=feat_lens, audio_seconds=float(wave_lens.sum()) / self.sample_rate)
        return b

    def _from_features(self, items) -> dict[str, Any]:
        b = collate_features(items)
        if not b["feats"].size(0) and self.features.feature_dim is not None:
            b["feats"] = torch.zeros(0, self.features.feature_dim, 0)
        if b["feats"].size(0) and self.specaug is not None:
            epoch = self.dataset.epoch if self.dataset is not None else 0
            self.specaug.generator = torch.Generator().manual_seed(batch_seed(self.seed, epoch, b["utt_ids"]))
            b["feats"] = self.specaug(b["feats"], b["feat_lens"])
        return b
