"""wav2vec 2.0 recipes for :func:`engine.train`: self-supervised pre-training and CTC fine-tuning.

Two families of ``train.model.family`` (``asr_core/train/recipes.py``), one config class:

``wav2vec2_pretrain`` (:class:`Wav2Vec2PretrainRecipe`): the contrastive task on manifests
    whose rows need no ``text``. Per utterance, the masks, Gumbel noise and negatives are drawn
    from a generator seeded by (seed, epoch, utt_id), so an utterance's loss does not depend on
    its batch, the worker count or a resume. Loss per masked frame (``losses.py``), the Gumbel
    temperature annealed per update. Evaluation: the same loss on the dev manifest with fixed
    draws (epoch 0) and the codebook perplexity; ``loop.best_metric: loss``. ``model.pt`` holds
    the whole pre-training model (format ``asr-toolkit/wav2vec2-pretraining``).
``wav2vec2`` (:class:`Wav2Vec2CTCRecipe`): CTC fine-tuning with the letters vocabulary, the
    :class:`~asr_core.train.ctc_recipe.CTCRecipe` machinery (loader, evaluation by greedy WER,
    ``model.pt`` that evaluate / transcribe / export read) with: ``model.init_from`` (our
    pre-training ``model.pt``, a wav2vec2 ``model.pt``, or a fairseq checkpoint; the architecture
    fields must match the preset + overrides), ``model.freeze_feature_encoder`` (fairseq
    ``feature_grad_mult 0``), ``model.freeze_encoder_updates`` (fairseq ``freeze_finetune_updates``:
    only the head trains for the first N updates), and the model's fine-tuning masking and
    layerdrop (``mask_prob``, ``mask_channel_prob``, ``layerdrop`` in ``model.overrides``).
    DLE's schedule is ``tri_stage``.

The update count (Gumbel temperature, encoder freeze) comes from the schedule, which the engine
calls with the step before every optimizer update, and is saved with the recipe's state.
Under DDP (``ray.num_workers`` > 1) layerdrop and the encoder freeze would leave parameters
without gradients in some steps, which DDP refuses: both are rejected there with a clear error.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from asr_core.data.collate import FeatureCollate, batch_seed
from asr_core.data.dataset import Manifest, build_loader
from asr_core.data.loaders import eval_loader, load_manifest
from asr_core.features.frontends import build_frontend
from asr_core.io.torch_files import save_torch_file
from asr_core.models import ctc_loss, model_config
from asr_core.models.artifact import MODEL_FORMAT, V1_FORMAT
from asr_core.models.wav2vec2 import (
    Wav2Vec2Config,
    Wav2Vec2ForPreTraining,
    WaveformConfig,
    pretraining_loss,
    utterance_generators,
    wav2vec2_ctc_model,
)
from asr_core.text import CharVocab
from asr_core.train.building import total_steps
from asr_core.train.checkpoint import CheckpointError, load_checkpoint
from asr_core.train.ctc_recipe import CTCRecipe
from asr_core.train.ema import EMA
from asr_core.train.engine import RecipeBase
from asr_core.train.optim import build_optimizer, unwrap_model
from asr_core.train.schedule import ScheduleConfig, build_schedule
from asr_core.train.sections import DataParams, check_loss_normalization
from asr_core.train.sections import section_from_dict as _from_dict

PRETRAIN_FORMAT = "asr-toolkit/wav2vec2-pretraining"
MODEL_FORMATS = (MODEL_FORMAT, V1_FORMAT)  # a fine-tuned wav2vec 2.0 model.pt can seed another run
ARCH_FIELDS = (
    "conv_dims",
    "conv_kernels",
    "conv_strides",
    "conv_bias",
    "extractor_mode",
    "embed_dim",
    "num_layers",
    "ffn_dim",
    "num_heads",
    "layer_norm_first",
    "pos_conv_kernel",
    "pos_conv_groups",
    "hourglass",
)


@dataclass
class W2VModelParams:
    family: str = "wav2vec2"  # wav2vec2_pretrain | wav2vec2 (CTC fine-tuning)
    preset: str = "tiny"  # tiny | base | large
    overrides: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None  # fine-tuning: pre-training model.pt or fairseq checkpoint
    freeze_feature_encoder: bool = True  # fine-tuning (pre-training always trains it)
    freeze_encoder_updates: int = 0  # fine-tuning: only the CTC head trains for the first N updates


@dataclass
class W2VOptimParams:
    name: str = "adamw"  # fairseq's "adam" decouples weight decay: adamw here
    lr: float = 5e-4
    weight_decay: float = 0.01
    betas: list[float] | None = field(default_factory=lambda: [0.9, 0.98])
    eps: float | None = 1e-6
    exclude_norm_and_bias: bool = False
    ema: float | None = None
    schedule: dict[str, Any] = field(default_factory=lambda: {"name": "polynomial", "warmup_ratio": 0.08, "power": 1.0})
    diversity_weight: float = 0.1  # pre-training loss weights (DLE)
    feature_pen_weight: float = 10.0
    loss_normalization: str = "token"  # fine-tuning's CTC loss: see asr_core.train.sections.OptimParams

    def __post_init__(self) -> None:
        check_loss_normalization(self.loss_normalization)


@dataclass
class Wav2Vec2RecipeConfig:
    model: W2VModelParams = field(default_factory=W2VModelParams)
    features: dict[str, Any] = field(default_factory=dict)  # WaveformConfig fields
    data: DataParams = field(default_factory=DataParams)
    optim: W2VOptimParams = field(default_factory=W2VOptimParams)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Wav2Vec2RecipeConfig:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown wav2vec2 recipe section(s) {unknown}; known: {[f.name for f in fields(cls)]}")
        cfg = cls(
            model=_from_dict(W2VModelParams, d.get("model"), "model"),
            features=dict(d.get("features") or {}),
            data=_from_dict(DataParams, d.get("data"), "data"),
            optim=_from_dict(W2VOptimParams, d.get("optim"), "optim"),
        )
        if cfg.model.family not in ("wav2vec2", "wav2vec2_pretrain"):
            raise ValueError(f"model.family must be wav2vec2 or wav2vec2_pretrain, got {cfg.model.family!r}")
        model_config("wav2vec2", cfg.model.preset, **cfg.model.overrides)  # fail now on a bad preset / field
        WaveformConfig.from_dict(cfg.features)
        ScheduleConfig.from_dict(cfg.optim.schedule)
        if cfg.data.loader != "torch":
            raise ValueError(f"data.loader: wav2vec 2.0 reads waveforms with the torch loader, got {cfg.data.loader!r}")
        if cfg.data.cache_features:
            raise ValueError("data.cache_features: wav2vec 2.0 reads raw waveforms; there are no features to cache")
        if cfg.model.freeze_encoder_updates < 0:
            raise ValueError(f"model.freeze_encoder_updates must be >= 0, got {cfg.model.freeze_encoder_updates}")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _CountingSchedule:
    """The schedule, telling ``on_update(n)`` the number of updates done after each ``apply``."""

    def __init__(self, inner, on_update) -> None:
        self.inner, self.on_update = inner, on_update

    def apply(self, optimizer, step: int) -> float:
        self.on_update(step + 1)  # this update is under way: the next forward is for update step + 1
        return self.inner.apply(optimizer, step)

    def with_total_steps(self, total_steps: int) -> _CountingSchedule:
        return _CountingSchedule(self.inner.with_total_steps(total_steps), self.on_update)

    def __getattr__(self, name: str):  # lr_at, state_dict, load_state_dict, observe (when present)
        return getattr(self.inner, name)


def _no_tokens(text: str) -> list[int]:
    return []


class _Wav2Vec2Common(RecipeBase):
    """What both recipes build: config, waveform loader, optimizer, schedule, update counter."""

    cfg: Wav2Vec2RecipeConfig
    model: nn.Module

    def _setup(
        self,
        cfg: Wav2Vec2RecipeConfig,
        *,
        max_steps: int,
        max_epochs: float | None = None,
        grad_accum: int,
        seed: int,
        rank: int,
        world_size: int,
        device,
        tokenize,
        require_text: bool,
    ) -> None:
        self.cfg, self.seed, self.device = cfg, seed, torch.device(device)
        self.features_cfg = WaveformConfig.from_dict(cfg.features)
        self.frontend = build_frontend("waveform", self.features_cfg)
        m = cfg.model
        self.model_cfg: Wav2Vec2Config = model_config("wav2vec2", m.preset, **m.overrides)
        if world_size > 1 and self.model_cfg.layerdrop > 0:
            raise ValueError(
                "wav2vec2 under DDP (ray.num_workers > 1): layerdrop leaves layers without gradients, "
                "which DDP refuses; set model.overrides.layerdrop: 0"
            )
        d = cfg.data
        self.train_loader, self.sampler = build_loader(
            d.train_manifest,
            tokenize,
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
            sample_rate=self.features_cfg.sample_rate,
            persistent_workers=d.num_workers > 0,
            require_text=require_text,
        )
        self.train_loader.collate_fn = FeatureCollate(
            self.frontend, None, train=True, seed=seed, dataset=self.train_loader.dataset
        )
        self.steps_per_epoch = max(1, math.ceil(len(self.sampler) / grad_accum))
        self.num_updates = 0
        self.max_steps = total_steps(max_steps, max_epochs, self.steps_per_epoch)

    def _optim(self) -> None:
        o = self.cfg.optim
        self.optimizer = build_optimizer(
            o.name,
            self.model,
            o.lr,
            o.weight_decay,
            betas=tuple(o.betas) if o.betas else None,
            eps=o.eps,
            exclude_norm_and_bias=o.exclude_norm_and_bias,
        )
        inner = build_schedule(
            ScheduleConfig.from_dict(o.schedule),
            o.lr,
            total_steps=self.max_steps,
            steps_per_epoch=self.steps_per_epoch,
        )
        self.schedule = _CountingSchedule(inner, self._set_updates)
        self.ema = EMA(self.model, o.ema) if o.ema else None

    def _set_updates(self, n: int) -> None:
        self.num_updates = int(n)

    def state_dict(self) -> dict[str, Any]:
        return {"recipe": self.cfg.to_dict(), "num_updates": self.num_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._set_updates(int(state.get("num_updates", 0)))


# ---------------------------------------------------------------------------------------------
# Pre-training


class Wav2Vec2PretrainRecipe(_Wav2Vec2Common):
    """Self-supervised pre-training (contrastive + diversity + feature penalty); see the module doc."""

    def __init__(
        self,
        cfg: Wav2Vec2RecipeConfig,
        *,
        max_steps: int,
        max_epochs: float | None = None,
        grad_accum: int = 1,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        device: str | torch.device = "cpu",
    ) -> None:
        if cfg.model.family != "wav2vec2_pretrain":
            raise ValueError(f"Wav2Vec2PretrainRecipe needs model.family wav2vec2_pretrain, got {cfg.model.family!r}")
        self._setup(
            cfg,
            max_steps=max_steps,
            max_epochs=max_epochs,
            grad_accum=grad_accum,
            seed=seed,
            rank=rank,
            world_size=world_size,
            device=device,
            tokenize=_no_tokens,
            require_text=False,
        )
        torch.manual_seed(seed)  # the same initial weights on every rank
        self.model = Wav2Vec2ForPreTraining(self.model_cfg).to(self.device)
        self._optim()
        self._dev: list | None = None

    def _set_updates(self, n: int) -> None:
        super()._set_updates(n)
        self.model.set_num_updates(self.num_updates)

    def _terms(self, model: nn.Module, batch: dict[str, Any], epoch: int) -> dict[str, torch.Tensor]:
        seeds = [batch_seed(self.seed, epoch, [u]) for u in batch["utt_ids"]]
        return model(
            batch["feats"].to(self.device, non_blocking=True),
            batch["feat_lens"].to(self.device, non_blocking=True),
            utterance_generators(seeds, self.device),
        )

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor | None, int]:
        if batch["feats"].size(0) == 0:
            return None, 0
        terms = self._terms(model, batch, self.train_loader.dataset.epoch)
        o = self.cfg.optim
        return pretraining_loss(terms, o.diversity_weight, o.feature_pen_weight)

    def _dev_batches(self):
        d = self.cfg.data
        if self._dev is None:
            manifest = load_manifest(Manifest.load(d.dev_manifest, require_text=False), d.eval_max_utterances or None)
            loader = eval_loader(manifest, _no_tokens, self.frontend, batch_seconds=d.eval_batch_seconds, num_buckets=1)
            self._dev = list(loader)
        return self._dev

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Dev loss with fixed draws (epoch 0): comparable between evaluations; quantiser in eval (argmax)."""
        if not self.cfg.data.dev_manifest:
            return {}
        t0 = time.monotonic()
        o = self.cfg.optim
        ce = n = loss_sum = ppl = 0.0
        batches = 0
        for b in self._dev_batches():
            if b["feats"].size(0) == 0:
                continue
            terms = self._terms(model, b, epoch=0)
            loss, k = pretraining_loss(terms, o.diversity_weight, o.feature_pen_weight)
            ce += float(terms["contrastive"].sum())
            n += k
            loss_sum += float(loss) * k
            ppl += float(terms["code_perplexity"])
            batches += 1
        return {
            "loss": loss_sum / max(n, 1),
            "contrastive": ce / max(n, 1),
            "masked_frames": n,
            "code_perplexity": ppl / max(batches, 1),
            "temp": float(self.model.quantizer.curr_temp),
            "seconds": time.monotonic() - t0,
        }

    def save_model(
        self, path: str | os.PathLike, state_dict: dict[str, torch.Tensor], step: int, metrics: dict[str, Any]
    ) -> Path:
        """The pre-trained model for fine-tuning (``model.init_from``); not a CTC model."""
        obj = {
            "format": PRETRAIN_FORMAT,
            "version": 1,
            "family": "wav2vec2_pretrain",
            "model_config": self.model_cfg.to_dict(),
            "features": self.features_cfg.to_dict(),
            "model": {k: v.detach().cpu().clone() for k, v in state_dict.items()},
            "step": int(step),
            "metrics": {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float, str, bool))},
        }
        return save_torch_file(obj, path)


# ---------------------------------------------------------------------------------------------
# Fine-tuning


def load_encoder_weights(
    path: str | os.PathLike, cfg: Wav2Vec2Config, features: WaveformConfig | None = None
) -> dict[str, torch.Tensor]:
    """The ``Wav2Vec2Encoder`` state dict of a pre-training ``model.pt``, a wav2vec2 ``model.pt`` or a
    fairseq checkpoint, after checking that its architecture equals ``cfg``'s (Hourglass plan included)
    and, for our files, that it was trained with the same waveform normalisation as ``features``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model.init_from: {path} not found (run the pre-training first)")
    try:
        obj = load_checkpoint(path)
    except CheckpointError:
        obj = {}  # a legacy fairseq checkpoint (argparse.Namespace): the fairseq reader allows it
    if obj.get("format") in (PRETRAIN_FORMAT, *MODEL_FORMATS):
        if obj.get("family") not in ("wav2vec2_pretrain", "wav2vec2"):
            raise ValueError(f"model.init_from: {path} is a {obj.get('family')} model, not wav2vec 2.0")
        saved = Wav2Vec2Config.from_dict(obj["model_config"])
        if features is not None and obj.get("features") is not None:
            was = WaveformConfig.from_dict(obj["features"]).normalize
            if was != features.normalize:
                raise ValueError(
                    f"model.init_from: {path} was trained with features.normalize={was}, this run "
                    f"has {features.normalize}: the encoder would see other inputs"
                )
        state = {k.removeprefix("encoder."): v for k, v in obj["model"].items() if k.startswith("encoder.")}
    else:
        from asr_core.models.ctc import CTCModel
        from asr_core.models.wav2vec2.fairseq import import_fairseq

        model, saved, _ = import_fairseq(
            path
        )  # a fine-tuned checkpoint gives a CTCModel, a pre-trained one the encoder
        state = (model.encoder if isinstance(model, CTCModel) else model).state_dict()
    diff = {k: (getattr(saved, k), getattr(cfg, k)) for k in ARCH_FIELDS if getattr(saved, k) != getattr(cfg, k)}
    if diff:
        raise ValueError(
            f"model.init_from: {path} has another architecture than model.preset + overrides "
            f"(checkpoint, this run): {diff}"
        )
    return state


class Wav2Vec2CTCRecipe(_Wav2Vec2Common, CTCRecipe):
    """CTC fine-tuning of a (pre-trained) wav2vec 2.0 encoder; evaluation and ``model.pt`` as CTCRecipe."""

    frontend_name = "waveform"

    def __init__(
        self,
        cfg: Wav2Vec2RecipeConfig,
        *,
        max_steps: int,
        max_epochs: float | None = None,
        grad_accum: int = 1,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        device: str | torch.device = "cpu",
    ) -> None:
        if cfg.model.family != "wav2vec2":
            raise ValueError(f"Wav2Vec2CTCRecipe needs model.family wav2vec2, got {cfg.model.family!r}")
        d, m = cfg.data, cfg.model
        self.vocab = CharVocab.load(d.vocab) if d.vocab else CharVocab()
        self._setup(
            cfg,
            max_steps=max_steps,
            max_epochs=max_epochs,
            grad_accum=grad_accum,
            seed=seed,
            rank=rank,
            world_size=world_size,
            device=device,
            tokenize=self.vocab.encode,
            require_text=True,
        )
        if world_size > 1 and m.freeze_encoder_updates > 0:
            raise ValueError(
                "wav2vec2 under DDP (ray.num_workers > 1): model.freeze_encoder_updates leaves the "
                "encoder without gradients, which DDP refuses; set it to 0"
            )
        torch.manual_seed(seed)
        self.model = wav2vec2_ctc_model(self.model_cfg, self.vocab.num_outputs)
        if m.init_from:
            self.model.encoder.load_state_dict(load_encoder_weights(m.init_from, self.model_cfg, self.features_cfg))
        if m.freeze_feature_encoder:
            self.model.encoder.freeze_feature_encoder_()
        self.model.to(self.device)
        self._optim()
        self._dev = None

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor | None, int]:
        n = batch["feats"].size(0)
        if n == 0:
            return None, 0
        x = batch["feats"].to(self.device, non_blocking=True)
        x_lens = batch["feat_lens"].to(self.device, non_blocking=True)
        if self.num_updates < self.cfg.model.freeze_encoder_updates:
            raw = unwrap_model(model)
            with torch.no_grad():
                y, out_lens = raw.encoder(x, x_lens)
            log_probs = raw.decoder(y)
        else:
            log_probs, out_lens = model(x, x_lens)
        token_lens = batch["token_lens"].to(self.device, non_blocking=True)
        losses = ctc_loss(
            log_probs, out_lens, batch["tokens"].to(self.device, non_blocking=True), token_lens, reduction="none"
        )
        return self.reduce_loss(losses, token_lens)


__all__ = [
    "PRETRAIN_FORMAT",
    "Wav2Vec2CTCRecipe",
    "Wav2Vec2PretrainRecipe",
    "Wav2Vec2RecipeConfig",
    "load_encoder_weights",
]
