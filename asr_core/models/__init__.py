"""Acoustic models: encoders behind one interface, CTC head, and the model registry.

    build_model("quartznet", "15x5", num_outputs=29)          # DLE's QuartzNet 15x5
    build_model("quartznet", "tiny", 29, dropout=0.1)         # preset + field overrides
    build_model_from_config("jasper", cfg.to_dict(), 29)      # e.g. from a checkpoint

Layout (see ``encoder.py``): encoders take (B, F, T) features with (B,) lengths and
return (B, T', D) with (B,) lengths; ``CTCModel`` returns log-probs (B, T', V)
with the blank last (V - 1).

A new family registers here: its config dataclass (an ``EncoderConfig``), its
presets, and a ``model(config, num_outputs)`` builder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from asr_core.models import conformer as _conformer
from asr_core.models import jasper as _jasper
from asr_core.models import quartznet as _quartznet
from asr_core.models.conformer import ConformerConfig, conformer_encoder
from asr_core.models.conv import BlockSpec, ConvBlock, ConvEncoder, MaskedConv1d, separable_conv, sub_block
from asr_core.models.ctc import CTCHead, CTCModel, ctc_loss, ctc_model, greedy_decode
from asr_core.models.encoder import Encoder, EncoderConfig
from asr_core.models.jasper import JasperConfig, jasper_10x5, jasper_model, jasper_tiny
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
    quartznet_model,
    quartznet_tiny,
)
from asr_core.models.rnnt import PRESETS as _RNNT_PRESETS
from asr_core.models.rnnt import RNNTConfig, Transducer, rnnt_model
from asr_core.models.wav2vec2 import PRESETS as _W2V_PRESETS
from asr_core.models.wav2vec2 import Wav2Vec2Config, wav2vec2_ctc_model


@dataclass(frozen=True)
class Family:
    config_cls: type[EncoderConfig]
    presets: Mapping[str, Callable[..., EncoderConfig]]
    build: Callable[[Any, int], nn.Module]
    kind: str = "ctc"  # the objective (asr_core.objectives) that trains and decodes the model
    frontend: str = "filterbank"  # what it reads (asr_core.features.frontends)


FAMILIES: dict[str, Family] = {
    "quartznet": Family(QuartzNetConfig, _quartznet.PRESETS, quartznet_model),
    "jasper": Family(JasperConfig, _jasper.PRESETS, jasper_model),
    "rnnt": Family(RNNTConfig, _RNNT_PRESETS, rnnt_model, kind="transducer", frontend="streaming_filterbank"),
    "wav2vec2": Family(Wav2Vec2Config, _W2V_PRESETS, wav2vec2_ctc_model, frontend="waveform"),
    "conformer": Family(ConformerConfig, _conformer.PRESETS, ctc_model(conformer_encoder)),
}


def _family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known: {sorted(FAMILIES)}") from None


def family_kind(family: str) -> str:
    """The objective of a family's models: ``"ctc"`` or ``"transducer"``."""
    return _family(family).kind


def model_config(family: str, preset: str, **overrides: Any) -> EncoderConfig:
    """The preset's config with ``overrides`` applied (unknown fields raise)."""
    fam = _family(family)
    if preset not in fam.presets:
        raise ValueError(f"unknown {family} preset {preset!r}; known: {sorted(fam.presets)}")
    return fam.presets[preset](**overrides)


def build_model_from_config(family: str, config: EncoderConfig | Mapping[str, Any], num_outputs: int) -> CTCModel:
    fam = _family(family)
    if not isinstance(config, EncoderConfig):
        config = fam.config_cls.from_dict(config)
    elif not isinstance(config, fam.config_cls):
        raise TypeError(f"{family} needs a {fam.config_cls.__name__}, got {type(config).__name__}")
    return fam.build(config, num_outputs)


def build_model(family: str, preset: str, num_outputs: int, **overrides: Any) -> CTCModel:
    """Registry entry point: a CTC model of ``family`` built from ``preset``."""
    return build_model_from_config(family, model_config(family, preset, **overrides), num_outputs)


__all__ = [
    "FAMILIES",
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
    "family_kind",
    "ctc_loss",
    "ctc_model",
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
