"""Acoustic models: encoders behind one interface, the heads, and the model registry.

    build_model("quartznet", "15x5", num_outputs=29)             # DLE's QuartzNet 15x5 (CTC)
    build_model("quartznet", "tiny", 29, dropout=0.1)            # preset + field overrides
    build_model("conformer", "s", 1024, kind="transducer")       # any encoder under any head
    build_model_from_config("jasper", cfg.to_dict(), 29)         # e.g. from a model file

A model is an encoder (a *family*: config dataclass, presets, encoder builder, the front end it
reads) under a head (:mod:`asr_core.models.heads`: ``ctc`` or ``transducer``). Layout (see
``encoder.py``): encoders take (B, F, T) features with (B,) lengths and return (B, T', D) with
(B,) lengths; ``CTCModel`` returns log-probs (B, T', V).

A new encoder registers here with one ``Family`` entry; nothing else names it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from asr_core.models import conformer as _conformer
from asr_core.models import jasper as _jasper
from asr_core.models import quartznet as _quartznet
from asr_core.models.conformer import ConformerConfig, ConformerEncoder
from asr_core.models.conv import BlockSpec, ConvBlock, ConvEncoder, MaskedConv1d, separable_conv, sub_block
from asr_core.models.ctc import CTCHead, CTCModel, ctc_loss, greedy_decode
from asr_core.models.encoder import Encoder, EncoderConfig
from asr_core.models.heads import KINDS, TransducerHeadConfig, attach_head, head_config
from asr_core.models.jasper import JasperConfig, jasper_10x5, jasper_encoder, jasper_model, jasper_tiny
from asr_core.models.nemo_keys import (
    dle_jasper_to_model_keys,
    dle_to_nemo_keys,
    model_to_dle_jasper_keys,
    nemo_to_dle_keys,
)
from asr_core.models.quartznet import (
    QuartzNetConfig,
    quartznet_5x5,
    quartznet_10x5,
    quartznet_15x5,
    quartznet_encoder,
    quartznet_model,
    quartznet_tiny,
)
from asr_core.models.rnnt import PRESETS as _RNNT_PRESETS
from asr_core.models.rnnt import RNNTConfig, RNNTEncoder, Transducer, rnnt_model
from asr_core.models.wav2vec2 import PRESETS as _W2V_PRESETS
from asr_core.models.wav2vec2 import Wav2Vec2Config, Wav2Vec2Encoder, wav2vec2_ctc_model


@dataclass(frozen=True)
class Family:
    config_cls: type[EncoderConfig]
    presets: Mapping[str, Callable[..., EncoderConfig]]
    encoder: Callable[[Any], Encoder]  # config -> encoder
    kind: str = "ctc"  # the default head (asr_core.models.heads), hence objective (asr_core.objectives)
    frontend: str = "filterbank"  # what it reads (asr_core.features.frontends)


FAMILIES: dict[str, Family] = {
    "quartznet": Family(QuartzNetConfig, _quartznet.PRESETS, quartznet_encoder),
    "jasper": Family(JasperConfig, _jasper.PRESETS, jasper_encoder),
    "rnnt": Family(RNNTConfig, _RNNT_PRESETS, RNNTEncoder, kind="transducer", frontend="streaming_filterbank"),
    "wav2vec2": Family(Wav2Vec2Config, _W2V_PRESETS, Wav2Vec2Encoder, frontend="waveform"),
    "conformer": Family(ConformerConfig, _conformer.PRESETS, ConformerEncoder),
}


def _family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known: {sorted(FAMILIES)}") from None


def family_kind(family: str) -> str:
    """The default head of a family's models: ``"ctc"`` or ``"transducer"``."""
    return _family(family).kind


def family_frontend(family: str) -> str:
    """The front end a family's encoder reads (a name of ``asr_core.features.frontends``)."""
    return _family(family).frontend


def model_config(family: str, preset: str, **overrides: Any) -> EncoderConfig:
    """The preset's config with ``overrides`` applied (unknown fields raise)."""
    fam = _family(family)
    if preset not in fam.presets:
        raise ValueError(f"unknown {family} preset {preset!r}; known: {sorted(fam.presets)}")
    return fam.presets[preset](**overrides)


def resolve_head(
    family: str, config: EncoderConfig, kind: str | None = None, head: Mapping[str, Any] | None = None
) -> tuple[str, TransducerHeadConfig | None]:
    """``(kind, head config)``: ``kind`` defaults to the family's, the head config to what the
    encoder config names (see :mod:`asr_core.models.heads`) with ``head`` applied."""
    kind = kind or _family(family).kind
    return kind, head_config(kind, config, head)


def build_model_from_config(
    family: str,
    config: EncoderConfig | Mapping[str, Any],
    num_outputs: int,
    *,
    kind: str | None = None,
    head_config: Mapping[str, Any] | None = None,
) -> nn.Module:
    """The family's encoder of ``config`` under a ``kind`` head (default: the family's)."""
    fam = _family(family)
    if not isinstance(config, EncoderConfig):
        config = fam.config_cls.from_dict(config)
    elif not isinstance(config, fam.config_cls):
        raise TypeError(f"{family} needs a {fam.config_cls.__name__}, got {type(config).__name__}")
    kind, head = resolve_head(family, config, kind, head_config)
    return attach_head(kind, fam.encoder(config), num_outputs, head)


def build_model(
    family: str,
    preset: str,
    num_outputs: int,
    *,
    kind: str | None = None,
    head_config: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> nn.Module:
    """Registry entry point: ``family``'s ``preset`` encoder (fields overridden) under a ``kind`` head."""
    return build_model_from_config(
        family, model_config(family, preset, **overrides), num_outputs, kind=kind, head_config=head_config
    )


__all__ = [
    "FAMILIES",
    "KINDS",
    "TransducerHeadConfig",
    "BlockSpec",
    "CTCHead",
    "CTCModel",
    "ConformerConfig",
    "ConvBlock",
    "ConvEncoder",
    "Encoder",
    "EncoderConfig",
    "Family",
    "JasperConfig",
    "MaskedConv1d",
    "QuartzNetConfig",
    "RNNTConfig",
    "Transducer",
    "Wav2Vec2Config",
    "build_model",
    "build_model_from_config",
    "family_frontend",
    "family_kind",
    "resolve_head",
    "ctc_loss",
    "dle_jasper_to_model_keys",
    "dle_to_nemo_keys",
    "greedy_decode",
    "jasper_10x5",
    "jasper_model",
    "jasper_tiny",
    "model_config",
    "model_to_dle_jasper_keys",
    "nemo_to_dle_keys",
    "quartznet_5x5",
    "quartznet_10x5",
    "quartznet_15x5",
    "quartznet_model",
    "quartznet_tiny",
    "rnnt_model",
    "separable_conv",
    "sub_block",
    "wav2vec2_ctc_model",
]
