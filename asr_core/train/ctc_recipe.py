"""The QuartzNet / Jasper CTC recipe (NVIDIA DeepLearningExamples, "DLE") for :func:`engine.train`.

What it builds, from a params dict (``params/train.yaml``, keys checked):

- model: ``build_model(family, preset, 29, **overrides)``; blank last.
- data: the duration-bucketed, resumable loader of ``asr_core.data`` over the train manifest,
  sharded over DDP ranks. Per utterance, in the loader workers (``wave_transform``, seeded
  per (seed, epoch, index)): silence trim (optional, DLE: -60 dB) and speed perturbation
  (0.85-1.15 on a 0.01 grid). Per batch, in the workers too (:class:`~asr_core.data.collate.FeatureCollate`): padding,
  dither, the log-mel filterbank and SpecAugment. Dither and SpecAugment draw from a generator
  seeded by (seed, epoch, the batch's utterance ids), not from a global RNG, so a batch gets
  the same augmentation whatever the number of workers and after a resume. (Dither is added
  here rather than inside ``FilterbankFeatures`` in train mode, which would draw from the
  worker's global torch RNG; the formula is the same: ``x + dither * N(0, 1)`` before
  pre-emphasis. The module runs in eval mode.)
- optimizer: Novograd betas (0.95, 0), lr 0.01, weight decay 1e-3 (DLE) or AdamW; the DLE
  schedule: warm-up / hold / exponential decay, given in epochs and converted to steps with
  the loader's batches per epoch (``ceil(batches / grad_accum)``); EMA 0.999 of the weights.
- evaluate: greedy CTC decoding of the dev manifest (optionally its first N utterances),
  WER and CER with jiwer, and the mean dev CTC loss.

``loader: torch | dali`` selects the *evaluation* feature pipeline. Training always uses the
torch loader: the DALI module implements trim, speed perturbation and dither but its reader
has neither duration bucketing, nor a checkpointable mid-epoch position (exact resume), nor
per-utterance bad-file reporting, and SpecAugment would have to run in the training
process. For evaluation DALI gives the same features as ``FilterbankFeatures`` in eval mode
(tested in ``tests/test_features.py``), on the GPU when there is one.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from asr_core.data.collate import FeatureCollate
from asr_core.data.dataset import (
    MAX_TRAIN_DURATION,
    Manifest,
    build_loader,
)
from asr_core.data.loaders import eval_loader, load_manifest
from asr_core.decoding.metrics import corpus_errors
from asr_core.features import (
    FilterbankConfig,
    SpecAugmentConfig,
    SpeedPerturbConfig,
    TrimSilenceConfig,
    speed_perturb,
    trim_silence,
)
from asr_core.features.frontends import build_frontend
from asr_core.models import build_model, ctc_loss, greedy_decode, model_config
from asr_core.models.artifact import save_model
from asr_core.text import CharVocab
from asr_core.train.ema import EMA
from asr_core.train.optim import build_optimizer
from asr_core.train.schedule import ScheduleConfig, build_schedule


def _from_dict(cls, d: dict[str, Any] | None, where: str):
    d = dict(d or {})
    unknown = sorted(set(d) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(f.name for f in fields(cls))}")
    return cls(**d)


@dataclass
class ModelParams:
    family: str = "quartznet"
    preset: str = "tiny"
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataParams:
    train_manifest: str = "data/prepared/train.jsonl"
    dev_manifest: str | None = "data/prepared/dev.jsonl"
    vocab: str | None = "data/tokenizer/chars.json"  # None: the built-in 28-symbol vocabulary
    batch_size: int | None = None  # give this or max_batch_seconds (padded seconds per batch and rank)
    max_batch_seconds: float | None = 160.0
    num_buckets: int = 10
    num_workers: int = 1
    min_duration: float | None = None
    max_duration: float | None = MAX_TRAIN_DURATION
    loader: str = "torch"  # evaluation features: torch | dali
    eval_batch_seconds: float = 300.0
    eval_max_utterances: int | None = None  # evaluate during training on the first N dev rows


@dataclass
class AugmentParams:
    speed_perturb: dict[str, Any] | None = field(default_factory=dict)  # None: off; {}: DLE defaults
    spec_augment: dict[str, Any] | None = field(default_factory=dict)
    trim_silence: dict[str, Any] | None = None  # {} or {top_db: 60}: on (DLE trims training audio)


@dataclass
class OptimParams:
    name: str = "novograd"
    lr: float = 0.01
    weight_decay: float = 1e-3
    betas: list[float] | None = None  # None: the optimizer's default (Novograd (0.95, 0.0))
    eps: float | None = None
    exclude_norm_and_bias: bool = False
    ema: float | None = 0.999  # None: no EMA
    schedule: dict[str, Any] = field(
        default_factory=lambda: {
            "name": "exponential",
            "warmup_epochs": 2,
            "hold_epochs": 140,
            "exp_gamma": 0.981,
            "min_lr": 1e-5,
        }
    )


@dataclass
class CTCRecipeConfig:
    model: ModelParams = field(default_factory=ModelParams)
    features: dict[str, Any] = field(default_factory=dict)  # FilterbankConfig overrides
    data: DataParams = field(default_factory=DataParams)
    augment: AugmentParams = field(default_factory=AugmentParams)
    optim: OptimParams = field(default_factory=OptimParams)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CTCRecipeConfig:
        d = dict(d)
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown recipe section(s) {unknown}; known: {[f.name for f in fields(cls)]}")
        cfg = cls(
            model=_from_dict(ModelParams, d.get("model"), "model"),
            features=dict(d.get("features") or {}),
            data=_from_dict(DataParams, d.get("data"), "data"),
            augment=_from_dict(AugmentParams, d.get("augment"), "augment"),
            optim=_from_dict(OptimParams, d.get("optim"), "optim"),
        )
        FilterbankConfig.from_dict(cfg.features)  # fail now on a bad key
        ScheduleConfig.from_dict(cfg.optim.schedule)
        if cfg.data.loader not in ("torch", "dali"):
            raise ValueError(f"data.loader must be 'torch' or 'dali', got {cfg.data.loader!r}")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Data: per-utterance and per-batch transforms (both run in the loader workers)


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


# ---------------------------------------------------------------------------------------------
# The recipe


def train_loader(d: Any, a: Any, encode, frontend: nn.Module, *, seed: int, world_size: int, rank: int):
    """``(loader, sampler)`` over ``d.train_manifest``: duration-bucketed, sharded over ranks, with
    ``a``'s speed perturbation / silence trim per utterance and ``frontend``'s features and SpecAugment
    per batch (:class:`FeatureCollate`), both in the loader workers. Shared by every recipe."""
    speed = SpeedPerturbConfig.from_dict(a.speed_perturb) if a.speed_perturb is not None else None
    trim = TrimSilenceConfig.from_dict(a.trim_silence) if a.trim_silence is not None else None
    spec = SpecAugmentConfig.from_dict(a.spec_augment) if a.spec_augment is not None else None
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
    )
    # features are computed in the workers: swap build_loader's plain collate for one that does it
    loader.collate_fn = FeatureCollate(frontend, spec, train=True, seed=seed, dataset=loader.dataset)
    return loader, sampler


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
    schedule = build_schedule(
        ScheduleConfig.from_dict(o.schedule), o.lr, total_steps=max_steps, steps_per_epoch=steps_per_epoch
    )
    return optimizer, schedule, (EMA(model, o.ema) if o.ema else None)


class CTCRecipe:
    """Everything :func:`asr_core.train.engine.train` needs for a CTC convnet; see the module doc."""

    frontend_name = "filterbank"  # asr_core.features.frontends

    def __init__(
        self,
        cfg: CTCRecipeConfig,
        *,
        max_steps: int,
        grad_accum: int = 1,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        device: str | torch.device = "cpu",
    ) -> None:
        self.cfg, self.seed, self.device = cfg, seed, torch.device(device)
        d, a = cfg.data, cfg.augment
        self.vocab = CharVocab.load(d.vocab) if d.vocab else CharVocab()
        self.features_cfg = FilterbankConfig.from_dict(cfg.features)
        self.frontend = build_frontend(self.frontend_name, self.features_cfg)
        m = cfg.model
        self.model_cfg = model_config(m.family, m.preset, **m.overrides)
        n_in = getattr(self.model_cfg, "in_features", self.features_cfg.n_mels)
        if n_in != self.features_cfg.n_mels:
            raise ValueError(f"model in_features {n_in} != features n_mels {self.features_cfg.n_mels}")
        torch.manual_seed(seed)  # the same initial weights on every rank
        self.model = build_model(m.family, m.preset, self.vocab.num_outputs, **m.overrides).to(self.device)

        self.train_loader, self.sampler = train_loader(
            d, a, self.vocab.encode, self.frontend, seed=seed, world_size=world_size, rank=rank
        )
        self.steps_per_epoch = max(1, math.ceil(len(self.sampler) / grad_accum))
        self.optimizer, self.schedule, self.ema = optimization(
            cfg.optim, self.model, max_steps=max_steps, steps_per_epoch=self.steps_per_epoch
        )
        self._dev = None

    # -- training -------------------------------------------------------------------------------
    def loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor | None, int]:
        n = batch["feats"].size(0)
        if n == 0:
            return None, 0
        dev = self.device
        log_probs, out_lens = model(
            batch["feats"].to(dev, non_blocking=True), batch["feat_lens"].to(dev, non_blocking=True)
        )
        loss = ctc_loss(
            log_probs,
            out_lens,
            batch["tokens"].to(dev, non_blocking=True),
            batch["token_lens"].to(dev, non_blocking=True),
        )
        return loss, n

    # -- evaluation -----------------------------------------------------------------------------
    def _dev_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        """(feats, feat_lens, reference texts) over the dev manifest (or its first N rows)."""
        d = self.cfg.data
        if self._dev is None:
            manifest = dev_manifest(d)
            if d.loader == "dali":
                self._dev = ("dali", self._dali_loader(manifest))
            else:
                self._dev = ("torch", dev_loader(manifest, d, self.vocab.encode, self.frontend), manifest)
        if self._dev[0] == "dali":
            loader = self._dev[1]
            for feats, feat_lens, idx in loader:
                yield feats, feat_lens, [loader.entries[i]["text"] for i in idx.tolist()]
        else:
            texts = dict(zip(self._dev[2].utt_ids, self._dev[2].texts))
            for b in self._dev[1]:
                self.dev_skipped += len(b["skipped"])
                if b["feats"].size(0):
                    yield b["feats"], b["feat_lens"], [texts[u] for u in b["utt_ids"]]

    def _dali_loader(self, manifest: Manifest):
        from asr_core.features.dali import build_dali_loader
        from asr_core.io import write_jsonl

        self._dali_tmp = tempfile.TemporaryDirectory(prefix="dev_dali_")
        path = Path(self._dali_tmp.name) / "dev.jsonl"  # absolute paths: DALI resolves against the cwd
        write_jsonl(
            path,
            [
                {
                    "audio_filepath": manifest.audio_path(i),
                    "duration": float(manifest.durations[i]),
                    "text": manifest.texts[i],
                }
                for i in range(len(manifest))
            ],
        )
        dev = "gpu" if self.device.type == "cuda" else "cpu"
        return build_dali_loader(
            path, batch_size=32, cfg=self.features_cfg, device=dev, device_id=self.device.index or 0
        )

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        if not self.cfg.data.dev_manifest:
            return {}
        t0 = time.monotonic()
        self.dev_skipped = 0
        refs, hyps, loss_sum = [], [], 0.0
        for feats, feat_lens, texts in self._dev_batches():
            log_probs, out_lens = model(feats.to(self.device), feat_lens.to(self.device))
            hyps += [self.vocab.decode(ids) for ids in greedy_decode(log_probs, out_lens)]
            refs += texts
            tokens = [torch.tensor(self.vocab.encode(t)) for t in texts]
            loss_sum += float(
                ctc_loss(
                    log_probs,
                    out_lens,
                    torch.cat(tokens).to(self.device),
                    torch.tensor([len(t) for t in tokens], device=self.device),
                    reduction="sum",
                )
            )
        scores = corpus_errors(zip(refs, hyps))
        metrics = {"wer": scores["wer"], "cer": scores["cer"]}
        metrics.update(
            loss=loss_sum / max(len(refs), 1),
            utterances=len(refs),
            skipped=self.dev_skipped,
            seconds=time.monotonic() - t0,
        )
        return metrics

    # -- the inference artifact -------------------------------------------------------------------
    def save_model(
        self, path: str | os.PathLike, state_dict: dict[str, torch.Tensor], step: int, metrics: dict[str, Any]
    ) -> Path:
        return save_model(
            path,
            kind="ctc",
            family=self.cfg.model.family,
            frontend=self.frontend_name,
            model_config=self.model_cfg.to_dict(),
            num_outputs=self.vocab.num_outputs,
            features=self.features_cfg.to_dict(),
            vocab=self.vocab.to_dict(),
            state_dict=state_dict,
            step=step,
            metrics=metrics,
        )

    def state_dict(self) -> dict[str, Any]:
        return {"recipe": self.cfg.to_dict()}  # kept in the checkpoint to show what ran; nothing to restore
