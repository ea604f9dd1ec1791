"""The evaluation loader: one manifest's utterances in manifest order, with the model's input.

Evaluation, transcription, export parity and training-time dev evaluation all read a
manifest the same way: no shuffling, batches of at most ``batch_seconds`` of audio (or the
longest utterance) bucketed by duration so padding stays small, the model's front end run in
the loader workers, unreadable files reported in each batch's ``skipped``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from asr_core.data.collate import FeatureCollate
from asr_core.data.dataset import AudioDataset, Manifest
from asr_core.data.sampler import BucketingBatchSampler


def load_manifest(manifest: Manifest | str | os.PathLike, max_utterances: int | None = None) -> Manifest:
    """A manifest (or its first ``max_utterances`` rows)."""
    m = manifest if isinstance(manifest, Manifest) else Manifest.load(manifest)
    if max_utterances is not None:
        m = m.subset(np.arange(min(max_utterances, len(m))))
    return m


def eval_loader(
    manifest: Manifest,
    encode: Callable[[str], list[int]],
    frontend: nn.Module,
    *,
    batch_seconds: float = 120.0,
    num_buckets: int = 10,
    num_workers: int = 0,
    persistent_workers: bool = False,
    keep_waves: bool = False,
) -> torch.utils.data.DataLoader:
    """Batches of ``manifest`` (not empty) with ``frontend``'s features, see the module doc."""
    if len(manifest) == 0:
        raise ValueError("eval_loader: the manifest has no utterances")
    dataset = AudioDataset(manifest, encode, sample_rate=frontend.cfg.sample_rate)
    budget = max(batch_seconds, float(manifest.durations.max()))
    sampler = BucketingBatchSampler(
        manifest.durations, max_batch_seconds=budget, num_buckets=num_buckets, shuffle=False
    )
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=FeatureCollate(frontend, keep_waves=keep_waves),
        num_workers=num_workers,
        persistent_workers=persistent_workers and num_workers > 0,
    )
