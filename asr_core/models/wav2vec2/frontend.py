"""The raw-waveform front end: per-utterance waveform normalisation and the conv feature encoder.

    B: batch, S: samples, T: encoder frames, C: conv channels.

Everything here is *batch-independent*: an utterance gives the same output alone or padded in
a batch. fairseq's group norm over the whole padded time axis is not (its statistics include
the padding); here the norms use the valid frames only, so padding never leaks into valid frames.
Conv outputs at t < length only read valid inputs (no padding in the convs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def length_mask(lens: torch.Tensor, size: int) -> torch.Tensor:
    """(B,) lengths -> (B, size) bool, True on valid positions."""
    return torch.arange(size, device=lens.device)[None, :] < lens[:, None]


@dataclass
class WaveformConfig:
    """The "features" of a waveform model: the waveform itself, optionally normalised.

    ``normalize``: zero mean, unit variance per utterance over its valid samples (fairseq's
    ``normalize``, used by the Large LV-60 models; the Base models were trained without).
    ``dither`` exists so that the CTC collate can treat this like a filterbank config (0: none).
    """

    sample_rate: int = 16000
    normalize: bool = True
    dither: float = 0.0
    kind: str = "waveform"

    def __post_init__(self) -> None:
        if self.kind != "waveform":
            raise ValueError(f"WaveformConfig.kind must be 'waveform', got {self.kind!r}")
        if self.sample_rate <= 0 or self.dither < 0:
            raise ValueError(f"bad WaveformConfig: {self}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WaveformConfig:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown WaveformConfig keys {unknown}; known: {[f.name for f in fields(cls)]}")
        return cls(**d)

    def module(self) -> WaveformFeatures:
        """The feature module (``asr_core.features.build_features`` calls this)."""
        return WaveformFeatures(self)


class WaveformFeatures(nn.Module):
    """``(x (B, S), x_lens (B,)) -> (x (B, S), x_lens)``: the call interface of ``FilterbankFeatures``.

    Samples past each length are zeroed; with ``normalize`` each utterance is normalised over
    its own valid samples (variance with ``eps`` 1e-5, as fairseq's ``layer_norm`` on the wave).
    """

    feature_dim = None  # the encoder reads (B, S) samples, not (B, N, T) features

    def __init__(self, cfg: WaveformConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or WaveformConfig()

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not torch.jit.is_tracing():
            assert x.ndim == 2, x.shape
        dtype = x.dtype
        x = x.float()
        valid = length_mask(x_lens, x.size(1)).to(x.dtype)
        if self.cfg.normalize:
            n = x_lens.to(x.dtype).clamp(min=1)[:, None]
            mean = (x * valid).sum(1, keepdim=True) / n
            var = (((x - mean) * valid) ** 2).sum(1, keepdim=True) / n
            x = (x - mean) / torch.sqrt(var + 1e-5)
        return (x * valid).to(dtype), x_lens

    def extra_repr(self) -> str:
        return f"normalize={self.cfg.normalize}"


class MaskedNorm(nn.Module):
    """Group norm with one group per channel (``kind="group"``, fairseq ``Fp32GroupNorm(C, C)``)
    or layer norm over channels (``kind="layer"``), on (B, C, T) with the time statistics taken
    over the valid frames only. Computed in float32 as fairseq's Fp32 norms."""

    def __init__(self, channels: int, kind: str, eps: float = 1e-5) -> None:
        super().__init__()
        self.kind, self.eps = kind, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        if self.kind == "layer":  # per frame: nothing crosses time
            x = F.layer_norm(x.transpose(1, 2), (x.size(1),), self.weight.float(), self.bias.float(), self.eps)
            return x.transpose(1, 2).to(dtype)
        valid = length_mask(lens, x.size(2)).to(x.dtype)[:, None, :]  # (B, 1, T)
        n = lens.to(x.dtype).clamp(min=1)[:, None, None]
        mean = (x * valid).sum(2, keepdim=True) / n
        var = (((x - mean) * valid) ** 2).sum(2, keepdim=True) / n
        x = (x - mean) / torch.sqrt(var + self.eps)
        return (x * self.weight.float()[None, :, None] + self.bias.float()[None, :, None]).to(dtype)


class ConvLayer(nn.Module):
    """conv -> (masked norm) -> GELU; fairseq's ``conv_layers.i`` is Sequential(conv, dropout, norm, GELU)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, bias: bool, norm: str | None) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride=stride, bias=bias)
        nn.init.kaiming_normal_(self.conv.weight)
        self.norm = MaskedNorm(c_out, norm) if norm else None

    def output_lengths(self, lens: torch.Tensor) -> torch.Tensor:
        return torch.div(lens - self.kernel, self.stride, rounding_mode="floor") + 1

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv(x)
        lens = self.output_lengths(lens).clamp(min=0)
        if self.norm is not None:
            x = self.norm(x, lens)
        return F.gelu(x), lens


class ConvFeatureEncoder(nn.Module):
    """``(wave (B, S), lens) -> (features (B, T, C), lens)``; fairseq ``ConvFeatureExtractionModel``.

    ``mode="group_norm"``: group norm on the first layer only (Base); ``"layer_norm"``: layer norm
    after every conv (Large LV-60). Frames past each length are zeroed.
    """

    def __init__(self, dims: Sequence[int], kernels: Sequence[int], strides: Sequence[int], *,
                 bias: bool = False, mode: str = "group_norm") -> None:
        super().__init__()
        layers, c_in = [], 1
        for i, (c, k, s) in enumerate(zip(dims, kernels, strides)):
            norm = "layer" if mode == "layer_norm" else ("group" if i == 0 else None)
            layers.append(ConvLayer(c_in, c, k, s, bias, norm))
            c_in = c
        self.conv_layers = nn.ModuleList(layers)
        self.output_dim = c_in

    def output_lengths(self, lens: torch.Tensor) -> torch.Tensor:
        for layer in self.conv_layers:
            lens = layer.output_lengths(lens).clamp(min=0)
        return lens

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not torch.jit.is_tracing():
            assert x.ndim == 2, x.shape
        x = x[:, None, :]
        for layer in self.conv_layers:
            x, lens = layer(x, lens)
        x = x.transpose(1, 2)  # (B, T, C)
        return x * length_mask(lens, x.size(1)).to(x.dtype)[:, :, None], lens
