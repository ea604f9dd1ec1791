"""The RNN-Transducer recipe (edgedict) for :func:`engine.train`.

What it builds, from a params dict (``params/profiles/rnnt.yaml``, keys checked):

- tokens: the tokenizer stage's sentencepiece model (``data.tokenizer``), blank = piece 0;
  the model's outputs are its pieces.
- model: ``build_model("rnnt", preset, V, **overrides)`` (``asr_core.models.rnnt``).
- features: :func:`rnnt_features_config` (80 mels, n_fft 512, no CMVN: the model's LayerNorm),
  computed in the loader workers by the CTC recipe's collate with the transducer's filterbank;
  the same per-batch seeded dither and SpecAugment (edgedict: 1 freq mask <= 5, 2 time masks
  <= 50), the same per-utterance trim and speed perturbation.
- loss: torchaudio ``rnnt_loss`` on the fp32 lattice (the encoder may run under autocast),
  mean over utterances.
- optimizer: edgedict's Adam lr 5e-4, 10k warm-up steps, plateau halving on the dev WER
  (``schedule: {name: plateau, ...}``); any optimizer/schedule of ``asr_core.train`` works.
- evaluate: greedy decoding of the dev manifest (its first N rows), WER/CER, mean dev loss.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from asr_core.data.dataset import MAX_TRAIN_DURATION
from asr_core.decoding.metrics import corpus_errors
from asr_core.decoding.rnnt_greedy import greedy_decode
from asr_core.features.frontends import build_frontend
from asr_core.models import build_model, model_config
from asr_core.models.artifact import save_model
from asr_core.models.rnnt.features import rnnt_features_config
from asr_core.models.rnnt.vocab import SubwordVocab
from asr_core.train.ctc_recipe import (
    AugmentParams,
    ModelParams,
    OptimParams,
    _from_dict,
    dev_loader,
    dev_manifest,
    optimization,
    train_loader,
)
from asr_core.train.schedule import ScheduleConfig


@dataclass
class RNNTDataParams:
    train_manifest: str = "data/prepared/train.jsonl"
    dev_manifest: str | None = "data/prepared/dev.jsonl"
    tokenizer: str = "data/tokenizer/spm.model"  # the tokenizer stage's sentencepiece model
    batch_size: int | None = None  # give this or max_batch_seconds
    max_batch_seconds: float | None = 64.0
    num_buckets: int = 10
    num_workers: int = 1
    min_duration: float | None = None
    max_duration: float | None = MAX_TRAIN_DURATION
    eval_batch_seconds: float = 120.0
    eval_max_utterances: int | None = None


@dataclass
class DecodingParams:
    max_symbols: int = 5  # greedy: tokens per encoder frame at most


@dataclass
class RNNTRecipeConfig:
    model: ModelParams = field(default_factory=lambda: ModelParams(family="rnnt", preset="tiny"))
    features: dict[str, Any] = field(default_factory=dict)  # overrides of rnnt_features_config()
    data: RNNTDataParams = field(default_factory=RNNTDataParams)
    augment: AugmentParams = field(default_factory=lambda: AugmentParams(speed_perturb=None, spec_augment=None))
    optim: OptimParams = field(
        default_factory=lambda: OptimParams(
            name="adam",
            lr=5e-4,
            weight_decay=0.0,
            ema=None,
            schedule={"name": "plateau", "warmup_steps": 10000, "factor": 0.5, "patience": 1, "min_lr": 1e-6},
        )
    )
    decoding: DecodingParams = field(default_factory=DecodingParams)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RNNTRecipeConfig:
        d = dict(d)
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown recipe section(s) {unknown}; known: {[f.name for f in fields(cls)]}")
        base = cls()
        cfg = cls(
            model=_from_dict(ModelParams, {**asdict(base.model), **(d.get("model") or {})}, "model"),
            features=dict(d.get("features") or {}),
            data=_from_dict(RNNTDataParams, d.get("data"), "data"),
            augment=_from_dict(AugmentParams, {**asdict(base.augment), **(d.get("augment") or {})}, "augment"),
            optim=_from_dict(OptimParams, {**asdict(base.optim), **(d.get("optim") or {})}, "optim"),
            decoding=_from_dict(DecodingParams, d.get("decoding"), "decoding"),
        )
        if cfg.model.family != "rnnt":
            raise ValueError(f"model.family: the transducer recipe trains family 'rnnt', got {cfg.model.family!r}")
        rnnt_features_config(cfg.features)  # fail now on a bad key
        ScheduleConfig.from_dict(cfg.optim.schedule)
        if cfg.decoding.max_symbols < 1:
            raise ValueError(f"decoding.max_symbols must be >= 1, got {cfg.decoding.max_symbols}")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RNNTRecipe:
    """Everything :func:`asr_core.train.engine.train` needs for a transducer; see the module doc."""

    def __init__(
        self,
        cfg: RNNTRecipeConfig,
        *,
        max_steps: int,
        grad_accum: int = 1,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        device: str | torch.device = "cpu",
    ) -> None:
        self.cfg, self.seed, self.device = cfg, seed, torch.device(device)
        d, a, m = cfg.data, cfg.augment, cfg.model
        self.vocab = SubwordVocab.load(d.tokenizer)
        self.features_cfg = rnnt_features_config(cfg.features)
        self.frontend = build_frontend("streaming_filterbank", self.features_cfg)
        self.model_cfg = model_config("rnnt", m.preset, **m.overrides)
        if self.model_cfg.in_features != self.features_cfg.n_mels:
            raise ValueError(
                f"model in_features {self.model_cfg.in_features} != features n_mels {self.features_cfg.n_mels}"
            )
        torch.manual_seed(seed)  # the same initial weights on every rank
        self.model = build_model("rnnt", m.preset, self.vocab.num_outputs, **m.overrides).to(self.device)

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
        loss = model(
            batch["feats"].to(dev, non_blocking=True),
            batch["feat_lens"].to(dev, non_blocking=True),
            batch["tokens"].to(dev, non_blocking=True),
            batch["token_lens"].to(dev, non_blocking=True),
        )
        return loss, n

    # -- evaluation -----------------------------------------------------------------------------
    def _dev_batches(self) -> Iterator[dict[str, Any]]:
        d = self.cfg.data
        if self._dev is None:
            manifest = dev_manifest(d)
            self._dev = (dev_loader(manifest, d, self.vocab.encode, self.frontend), manifest)
        texts = dict(zip(self._dev[1].utt_ids, self._dev[1].texts))
        for b in self._dev[0]:
            self.dev_skipped += len(b["skipped"])
            if b["feats"].size(0):
                b["texts"] = [texts[u] for u in b["utt_ids"]]
                yield b

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        if not self.cfg.data.dev_manifest:
            return {}
        t0 = time.monotonic()
        self.dev_skipped = 0
        refs, hyps, loss_sum = [], [], 0.0
        for b in self._dev_batches():
            feats, feat_lens = b["feats"].to(self.device), b["feat_lens"].to(self.device)
            ids = greedy_decode(model, feats, feat_lens, self.cfg.decoding.max_symbols)
            hyps += [self.vocab.decode(h) for h in ids]
            refs += b["texts"]
            loss_sum += float(
                model(feats, feat_lens, b["tokens"].to(self.device), b["token_lens"].to(self.device), reduction="sum")
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
            kind="transducer",
            family="rnnt",
            frontend="streaming_filterbank",
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
