"""The heads an encoder can end in, by objective: a model is ``encoder`` + ``head``.

    ctc         CTCHead: Linear(D -> V) and log-softmax                (``CTCModel``)
    transducer  prediction network + joint, and optionally an auxiliary CTC head (training
                aid only) on the encoder                                (``Transducer``)

Any encoder that honours :class:`~asr_core.models.encoder.Encoder`'s contract takes either head:
the head reads nothing but ``encoder.output_dim``. The transducer head's shapes are a
:class:`TransducerHeadConfig`; a family whose config already names them (the RNN-T family's
presets are edgedict's flagfiles, which size the whole model) supplies the defaults, and the
params' ``model.head_config`` overrides either.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from torch import nn

from asr_core.models.ctc import CTCHead, CTCModel
from asr_core.models.encoder import Encoder, EncoderConfig

KINDS = ("ctc", "transducer")
PREDICTORS = ("lstm", "stateless")


@dataclasses.dataclass(frozen=True)
class TransducerHeadConfig(EncoderConfig):
    """Prediction network and joint; the defaults are edgedict E4D1's."""

    embed_dim: int = 64  # vocab_embed_size
    pred_hidden: int = 256  # dec_hidden_size
    pred_layers: int = 1  # dec_layers
    pred_proj: int = 256  # dec_proj_size: P
    joint_dim: int = 256  # joint_size
    # lstm: Embedding -> LSTM -> Linear (edgedict); stateless: the last context_size tokens only
    # (icefall; pred_hidden and pred_layers unused)
    predictor: str = "lstm"
    context_size: int = 2
    # > 0 adds a CTC head on the encoder (Linear(D -> V), blank 0) whose loss, times this weight,
    # is added in training only (not in edgedict).
    ctc_weight: float = 0.0
    # > 0: the pruned transducer loss (asr_core/models/rnnt/pruned_loss.py) with this many nodes
    # per frame, plus simple_loss_scale x the simple joint's loss (two training-only Linear layers
    # to V); 0: the full loss over every (t, u) node.
    prune_range: int = 0
    simple_loss_scale: float = 0.5

    def __post_init__(self) -> None:
        if self.prune_range < 0 or self.prune_range == 1:
            raise ValueError(f"model.head_config.prune_range must be 0 (the full loss) or >= 2 (a window of 1 "
                             f"node cannot emit a token), got {self.prune_range}")
        if self.simple_loss_scale < 0:
            raise ValueError(f"model.head_config.simple_loss_scale must be >= 0, got {self.simple_loss_scale}")
        for name in ("embed_dim", "pred_hidden", "pred_layers", "pred_proj", "joint_dim", "context_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.head_config.{name} must be >= 1, got {getattr(self, name)}")
        if self.predictor not in PREDICTORS:
            raise ValueError(f"model.head_config.predictor must be one of {list(PREDICTORS)}, got {self.predictor!r}")
        if self.ctc_weight < 0:
            raise ValueError(f"model.head_config.ctc_weight must be >= 0, got {self.ctc_weight}")


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"model.head must be one of {list(KINDS)}, got {kind!r}")
    return kind


def head_config(kind: str, encoder_config: EncoderConfig, overrides: Mapping[str, Any] | None = None):
    """The resolved head config of ``kind`` (None for CTC, which has no settings)."""
    overrides = dict(overrides or {})
    if check_kind(kind) == "ctc":
        if overrides:
            raise ValueError(f"model.head_config: a CTC head has no settings, got {sorted(overrides)}")
        return None
    names = {f.name for f in dataclasses.fields(TransducerHeadConfig)}
    from_family = {
        f.name: getattr(encoder_config, f.name) for f in dataclasses.fields(encoder_config) if f.name in names
    }
    return TransducerHeadConfig.from_dict({**from_family, **overrides})


def attach_head(kind: str, encoder: Encoder, num_outputs: int, cfg: TransducerHeadConfig | None) -> nn.Module:
    """``encoder`` under a head of ``kind`` over ``num_outputs`` tokens (blank included)."""
    if check_kind(kind) == "ctc":
        return CTCModel(encoder, CTCHead(encoder.output_dim, num_outputs))
    from asr_core.models.rnnt.joint import Joint
    from asr_core.models.rnnt.model import Transducer
    from asr_core.models.rnnt.predictor import Predictor
    from asr_core.models.rnnt.stateless import StatelessPredictor

    cfg = cfg if cfg is not None else TransducerHeadConfig()
    pred = (StatelessPredictor if cfg.predictor == "stateless" else Predictor)(cfg, num_outputs)
    joint = Joint(encoder.output_dim, cfg.pred_proj, cfg.joint_dim, num_outputs)
    ctc = nn.Linear(encoder.output_dim, num_outputs) if cfg.ctc_weight > 0 else None  # last: the rest inits alike
    simple = None
    if cfg.prune_range > 0:
        simple = (nn.Linear(encoder.output_dim, num_outputs), nn.Linear(cfg.pred_proj, num_outputs))
    return Transducer(encoder, pred, joint, ctc_head=ctc, ctc_weight=cfg.ctc_weight, simple_joint=simple,
                      prune_range=cfg.prune_range, simple_loss_scale=cfg.simple_loss_scale)
