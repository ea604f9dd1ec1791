"""What every supervised recipe builds from its params sections: the training and dev loaders
(with the per-utterance and per-batch augmentation) and the optimizer, schedule and EMA.

Per utterance, in the loader workers (``wave_transform``, seeded per (seed, epoch, index)): silence
trim and speed perturbation. Per batch, in the workers too
(:class:`~asr_core.data.collate.FeatureCollate`): padding, dither, the front end's features and
SpecAugment, drawn from a generator seeded by (seed, epoch, the batch's utterance ids), so a
batch gets the same augmentation whatever the number of workers and after a resume. With
``data.cache_features`` the features of each utterance are computed once and kept
(:mod:`asr_core.data.feature_cache`); only SpecAugment is then drawn per batch.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from asr_core.data.collate import FeatureCollate
from asr_core.data.dataset import Manifest, build_loader
from asr_core.data.feature_cache import FeatureCache
from asr_core.data.loaders import eval_loader, load_manifest
from asr_core.features import (
    SpecAugmentConfig,
    SpeedPerturbConfig,
    TrimSilenceConfig,
    speed_perturb,
    trim_silence,
)
from asr_core.train.ema import EMA
from asr_core.train.optim import build_optimizer
from asr_core.train.schedule import ScheduleConfig, build_schedule


class WaveAugment:
    """``wave_transform(wave, rng)``: silence trim, then speed perturbation on the factor grid."""

    def __init__(self, sample_rate: int, speed: SpeedPerturbConfig | None, trim: TrimSilenceConfig | None):
        self.sample_rate, self.speed, self.trim = sample_rate, speed, trim
        self.grid = speed.grid() if speed is not None else []

    def __call__(self, wave: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        if self.trim is not None:
            trimmed = trim_silence(wave, self.trim.top_db, self.trim.frame_length, self.trim.hop_length)
            wave = trimmed if trimmed.numel() > 0 else wave
        if self.speed is not None and not (self.speed.p < 1 and rng.random() >= self.speed.p):
            factor = self.grid[int(rng.integers(len(self.grid)))]
            wave = speed_perturb(wave, self.sample_rate, factor, self.speed.step)
        return wave.contiguous()


def train_loader(d: Any, a: Any, encode, frontend: nn.Module, *, seed: int, world_size: int, rank: int):
    """``(loader, sampler)`` over ``d.train_manifest``: duration-bucketed, sharded over ranks, with
    ``a``'s speed perturbation / silence trim per utterance and ``frontend``'s features and SpecAugment
    per batch (:class:`FeatureCollate`), both in the loader workers. Shared by every recipe."""
    speed = SpeedPerturbConfig.from_dict(a.speed_perturb) if a.speed_perturb is not None else None
    trim = TrimSilenceConfig.from_dict(a.trim_silence) if a.trim_silence is not None else None
    spec = SpecAugmentConfig.from_dict(a.spec_augment) if a.spec_augment is not None else None
    cache = None
    if d.cache_features:
        check_feature_cache(d, a)
        cache = functools.partial(FeatureCache, frontend=frontend, seed=seed)
    loader, sampler = build_loader(
        d.train_manifest,
        encode,
        batch_size=d.batch_size,
        max_batch_seconds=d.max_batch_seconds,
        num_buckets=d.num_buckets,
        num_workers=d.num_workers,
        shuffle=True,
        seed=seed,
        num_replicas=world_size,
        rank=rank,
        min_duration=d.min_duration,
        max_duration=d.max_duration,
        wave_transform=WaveAugment(frontend.cfg.sample_rate, speed, trim) if (speed or trim) else None,
        sample_rate=frontend.cfg.sample_rate,
        persistent_workers=d.num_workers > 0,
        wrap_dataset=cache,
    )
    # features are computed in the workers: swap build_loader's plain collate for one that does it
    loader.collate_fn = FeatureCollate(
        frontend, spec, train=True, seed=seed, dataset=loader.dataset, cached=cache is not None
    )
    return loader, sampler


def check_feature_cache(d: Any, a: Any) -> None:
    """``data.cache_features`` needs features that are the same every epoch, held in one process."""
    if a.speed_perturb is not None:
        raise ValueError(
            "data.cache_features: the features are computed once per utterance, but augment.speed_perturb "
            "draws a new speed every epoch; set augment.speed_perturb: null or data.cache_features: false"
        )
    if d.num_workers != 0:
        raise ValueError(
            f"data.cache_features: the cache lives in the training process, but data.num_workers is "
            f"{d.num_workers} (each loader process would hold a copy); set data.num_workers: 0"
        )


def dev_manifest(d: Any) -> Manifest:
    """``d.dev_manifest``, or its first ``d.eval_max_utterances`` rows."""
    return load_manifest(d.dev_manifest, d.eval_max_utterances or None)


def dev_loader(manifest: Manifest, d: Any, encode, frontend: nn.Module) -> torch.utils.data.DataLoader:
    """The dev utterances in manifest order for evaluation during training (``d.eval_batch_seconds``)."""
    return eval_loader(
        manifest,
        encode,
        frontend,
        batch_seconds=d.eval_batch_seconds,
        num_buckets=1,
        num_workers=d.num_workers,
        persistent_workers=True,
    )


def total_steps(max_steps: int, max_epochs: float | None, steps_per_epoch: int) -> int:
    """The run's length in optimizer steps: ``loop.max_epochs`` passes over the training set
    (``steps_per_epoch`` updates each) when given, else ``loop.max_steps``."""
    if max_epochs is None:
        return max_steps
    return max(1, math.ceil(max_epochs * steps_per_epoch))


def optimization(o: Any, model: nn.Module, *, max_steps: int, steps_per_epoch: int):
    """``(optimizer, schedule, ema or None)`` from an optim params section (``OptimParams``)."""
    optimizer = build_optimizer(
        o.name,
        model,
        o.lr,
        o.weight_decay,
        betas=tuple(o.betas) if o.betas else None,
        eps=o.eps,
        exclude_norm_and_bias=o.exclude_norm_and_bias,
    )
    try:
        schedule = build_schedule(
            ScheduleConfig.from_dict(o.schedule), o.lr, total_steps=max_steps, steps_per_epoch=steps_per_epoch
        )
    except ValueError as e:  # e.g. a warm-up longer than a run measured in epochs of a small corpus
        raise ValueError(
            f"train.optim.schedule: {e} (the run: {max_steps} steps, {steps_per_epoch} an epoch); "
            f"lower train.optim.schedule.warmup_steps / hold_steps or raise train.loop.max_steps / max_epochs"
        ) from None
    return optimizer, schedule, (EMA(model, o.ema) if o.ema else None)
