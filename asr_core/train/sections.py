"""The params sections every supervised recipe shares: ``model``, ``data``, ``augment``, ``optim``.

A recipe's config is a :class:`RecipeConfig` subclass that only sets its own defaults (and adds a
section where its objective needs one, e.g. the transducer's ``decoding``)::

    train:
      model:   {family, preset, overrides, head, head_config}   # asr_core.models registry
      features: {...}                                           # the family's front-end config
      data:    {train_manifest, dev_manifest, vocab, batching, evaluation}
      augment: {speed_perturb, spec_augment, trim_silence}
      optim:   {name, lr, weight_decay, betas, eps, ema, loss_normalization, schedule}

Keys are checked: an unknown key in any section is refused, naming the section and the keys it
knows. A section given in params replaces the recipe's defaults field by field (not wholesale).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, Self

from asr_core.data.dataset import MAX_TRAIN_DURATION


def section_from_dict(cls, d: dict[str, Any] | None, where: str):
    """``cls(**d)`` with unknown keys refused, naming ``where``."""
    d = dict(d or {})
    unknown = sorted(set(d) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(f.name for f in fields(cls))}")
    return cls(**d)


@dataclass
class ModelParams:
    family: str = "quartznet"  # an encoder family of asr_core.models.FAMILIES
    preset: str = "tiny"
    overrides: dict[str, Any] = field(default_factory=dict)  # fields of the family's config
    head: str | None = None  # ctc | transducer; None: the family's own
    head_config: dict[str, Any] = field(default_factory=dict)  # TransducerHeadConfig fields
    # A model.pt to start from (transfer, e.g. a small corpus from a synthetic-corpus model):
    # asr_core.train.transfer. None: a fresh initialisation.
    init_from: str | None = None


@dataclass
class DataParams:
    train_manifest: str = "data/prepared/train.jsonl"
    dev_manifest: str | None = "data/prepared/dev.jsonl"
    # The tokenizer stage's output: chars.json (characters, blank last) or spm.model (sentencepiece
    # pieces, blank = piece 0); None: the built-in 28 characters.
    vocab: str | None = "data/tokenizer/chars.json"
    batch_size: int | None = None  # give this or max_batch_seconds (padded seconds per batch and rank)
    max_batch_seconds: float | None = 160.0
    num_buckets: int = 10
    num_workers: int = 1
    # Keep each training utterance's features in memory after its first epoch (asr_core.data.feature_cache):
    # needs num_workers 0 and no speed perturbation; the dither is then drawn once per utterance.
    cache_features: bool = False
    min_duration: float | None = None
    max_duration: float | None = MAX_TRAIN_DURATION
    loader: str = "torch"  # evaluation features: torch | dali (CTC filterbank models)
    eval_batch_seconds: float = 300.0
    eval_max_utterances: int | None = None  # evaluate during training on the first N dev rows


@dataclass
class AugmentParams:
    speed_perturb: dict[str, Any] | None = field(default_factory=dict)  # None: off; {}: DLE defaults
    spec_augment: dict[str, Any] | None = field(default_factory=dict)
    trim_silence: dict[str, Any] | None = None  # {} or {top_db: 60}: on (DLE trims training audio)


LOSS_NORMALIZATIONS = ("utterance", "token")


def check_loss_normalization(value: str) -> None:
    """``optim.loss_normalization`` of any recipe's optim section (see :class:`OptimParams`)."""
    if value not in LOSS_NORMALIZATIONS:
        raise ValueError(f"optim.loss_normalization must be one of {LOSS_NORMALIZATIONS}, got {value!r}")


@dataclass
class OptimParams:
    name: str = "novograd"
    lr: float = 0.01
    weight_decay: float = 1e-3
    betas: list[float] | None = None  # None: the optimizer's default (Novograd (0.95, 0.0))
    eps: float | None = None
    exclude_norm_and_bias: bool = False
    ema: float | None = 0.999  # None: no EMA
    # What the batch loss averages over: "token" (the batch's summed loss over its target tokens:
    # every token of the corpus weighs alike) or "utterance" (the mean over the batch's utterances,
    # DLE's and NeMo's mean_batch). The two agree for random fixed-size batches, which DLE and NeMo
    # use; for duration-bucketed batches "utterance" gives a token of a short-clip batch (many
    # utterances) several times less weight than one of a long-clip batch: measured 8.5 WER points
    # worse for the default model (RESULTS.md, "The loss normalisation").
    loss_normalization: str = "token"
    schedule: dict[str, Any] = field(
        default_factory=lambda: {
            "name": "exponential",
            "warmup_epochs": 2,
            "hold_epochs": 140,
            "exp_gamma": 0.981,
            "min_lr": 1e-5,
        }
    )

    def __post_init__(self) -> None:
        check_loss_normalization(self.loss_normalization)


@dataclass
class RecipeConfig:
    """The shared sections; subclasses change defaults with ``field(default_factory=...)`` and may
    add sections (dataclass-typed fields are sections, dict-typed ones free-form like ``features``)."""

    model: ModelParams = field(default_factory=ModelParams)
    features: dict[str, Any] = field(default_factory=dict)  # the front end's config fields
    data: DataParams = field(default_factory=DataParams)
    augment: AugmentParams = field(default_factory=AugmentParams)
    optim: OptimParams = field(default_factory=OptimParams)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        d = dict(d)
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown recipe section(s) {unknown}; known: {known}")
        base, sections = cls(), {}
        for f in fields(cls):
            default = getattr(base, f.name)
            if is_dataclass(default):
                given = d.get(f.name) or {}
                if not isinstance(given, dict):
                    raise ValueError(f"{f.name}: a mapping of keys, got {type(given).__name__}")
                sections[f.name] = section_from_dict(type(default), {**asdict(default), **given}, f.name)
            else:
                sections[f.name] = dict(d.get(f.name) or {})
        cfg = cls(**sections)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Checks a subclass adds (raise ``ValueError`` naming the key)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
