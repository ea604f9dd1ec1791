"""The front ends a model can read its audio through, by name, as a model file records them.

    filterbank            log-mel features, per-utterance normalisation, frames padded to a
                          multiple of ``pad_to`` (QuartzNet, Jasper, Conformer): (B, N, T)
    streaming_filterbank  the same log-mels without normalisation or frame padding, computed
                          so that a stream gives the offline frames exactly (transducers): (B, N, T)
    waveform              the samples themselves, optionally normalised (wav2vec 2.0): (B, S)

Every front end is a module ``(audio (B, S), lengths (B,)) -> (x, x_lens)`` with ``cfg`` (its
config dataclass) and ``feature_dim`` (N, or None for a waveform).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

FRONTENDS = ("filterbank", "streaming_filterbank", "waveform")


def frontend_config(name: str, d: Mapping[str, Any] | None = None):
    """The config dataclass of front end ``name`` from a (partial) dict; unknown keys raise."""
    d = dict(d or {})
    if name == "waveform":
        from asr_core.models.wav2vec2.frontend import WaveformConfig

        return WaveformConfig.from_dict(d)
    if name == "streaming_filterbank":
        from asr_core.models.rnnt.features import rnnt_features_config

        return rnnt_features_config(d)
    if name == "filterbank":
        from asr_core.features.filterbank import FilterbankConfig

        return FilterbankConfig.from_dict(d)
    raise ValueError(f"unknown front end {name!r}; known: {list(FRONTENDS)}")


def build_frontend(name: str, cfg) -> nn.Module:
    """The front-end module ``name`` with config ``cfg`` (a dataclass or a dict)."""
    if isinstance(cfg, Mapping):
        cfg = frontend_config(name, cfg)
    if name == "waveform":
        from asr_core.models.wav2vec2.frontend import WaveformFeatures

        return WaveformFeatures(cfg)
    if name == "streaming_filterbank":
        from asr_core.models.rnnt.features import RNNTFilterbank

        return RNNTFilterbank(cfg)
    if name == "filterbank":
        from asr_core.features.filterbank import FilterbankFeatures

        return FilterbankFeatures(cfg)
    raise ValueError(f"unknown front end {name!r}; known: {list(FRONTENDS)}")
