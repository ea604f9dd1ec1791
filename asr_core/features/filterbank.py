"""Log-mel filterbank features of the QuartzNet / Jasper family (DLE ``FilterbankFeatures``).

Pipeline, per utterance: dither (training only) -> pre-emphasis -> STFT (Hann 320 / hop 160 /
n_fft 512, frames centred on multiples of the hop) -> power spectrum -> mel (librosa/Slaney
filters, as DLE builds them with ``librosa.filters.mel``) -> ``log(x + guard)`` -> mean/std
normalisation over the valid frames -> frames past the length zeroed -> time padded to a
multiple of ``pad_to``.

One deliberate difference from DLE: DLE runs ``torch.stft(center=True)`` on the padded batch,
so the last one or two valid frames of a short utterance see the zeros (or dither) of its
batch padding instead of the reflected signal, and its features depend on its neighbours.
Here every utterance is reflect-padded at its *own* end, so the features equal DLE's for the
utterance processed alone, whatever the batch, and they equal DALI's ``spectrogram`` (which
reflects per sample) as well.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

_NORMALIZE = ("per_feature", "all_features", "none")
_WINDOWS = ("hann", "hamming", "blackman", "bartlett", "none")


@dataclass
class FilterbankConfig:
    """Feature settings; defaults are DLE's QuartzNet/Jasper values at 16 kHz.

    ``log_guard``: ``log(x + log_guard)``. DLE's ``features.py`` adds 1e-20 (and its DALI path
    clamps at 1e-20); NeMo and this toolkit use 2**-24. It only matters for (near) digital
    silence without dither; set 1e-20 for bit-level DLE parity.
    ``norm_eps`` is added to the (unbiased) standard deviation, as DLE does.
    ``window`` is the symmetric window (``periodic=False``), as DLE builds it.
    """

    sample_rate: int = 16000
    window_size: float = 0.02
    window_stride: float = 0.01
    n_fft: int = 512
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float | None = None
    preemph: float | None = 0.97
    dither: float = 1e-5
    log: bool = True
    log_guard: float = 2.0**-24
    normalize: str = "per_feature"
    norm_eps: float = 1e-5
    pad_to: int = 16
    window: str = "hann"
    mel_scale: str = "slaney"
    mel_norm: str | None = "slaney"

    def __post_init__(self) -> None:
        if self.normalize not in _NORMALIZE:
            raise ValueError(f"normalize must be one of {_NORMALIZE}, got {self.normalize!r}")
        if self.window not in _WINDOWS:
            raise ValueError(f"window must be one of {_WINDOWS}, got {self.window!r}")
        if self.mel_scale not in ("slaney", "htk"):
            raise ValueError(f"mel_scale must be 'slaney' or 'htk', got {self.mel_scale!r}")
        if self.mel_norm not in ("slaney", None):
            raise ValueError(f"mel_norm must be 'slaney' or None, got {self.mel_norm!r}")
        if not 0 < self.win_length <= self.n_fft:
            raise ValueError(f"need 0 < win_length ({self.win_length}) <= n_fft ({self.n_fft})")
        if self.hop_length <= 0:
            raise ValueError(f"window_stride gives hop_length {self.hop_length}")
        if self.n_fft % 2:
            raise ValueError(f"n_fft must be even, got {self.n_fft}")
        if self.pad_to < 0:
            raise ValueError(f"pad_to must be >= 0, got {self.pad_to}")

    @property
    def win_length(self) -> int:
        """Window length in samples; ``int()`` truncation as in DLE (0.02 * 16000 = 320)."""
        return int(self.sample_rate * self.window_size)

    @property
    def hop_length(self) -> int:
        return int(self.sample_rate * self.window_stride)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FilterbankConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown FilterbankConfig keys: {sorted(unknown)}")
        return cls(**d)


def _hz_to_mel(f: np.ndarray, htk: bool) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    f_sp = 200.0 / 3  # Slaney: linear below 1 kHz, logarithmic above
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    mels = f / f_sp
    log_part = min_log_hz / f_sp + np.log(np.maximum(f, min_log_hz) / min_log_hz) / logstep
    return np.where(f >= min_log_hz, log_part, mels)


def _mel_to_hz(m: np.ndarray, htk: bool) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    mel_scale: str = "slaney",
    norm: str | None = "slaney",
) -> torch.Tensor:
    """Triangular mel filters, shape (n_mels, n_fft // 2 + 1), float32.

    Same algorithm as ``librosa.filters.mel`` (float64 maths, float32 result), which DLE uses;
    defaults are librosa's (Slaney mel scale, Slaney area normalisation).
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    htk = mel_scale == "htk"
    fft_freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(f_min, htk), _hz_to_mel(f_max, htk), n_mels + 2), htk)
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    if norm == "slaney":
        weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    return torch.from_numpy(weights.astype(np.float32))


def make_window(name: str, win_length: int) -> torch.Tensor:
    """Symmetric (``periodic=False``) window as DLE builds it; 'none' is rectangular."""
    if name == "none":
        return torch.ones(win_length)
    fn = {
        "hann": torch.hann_window,
        "hamming": torch.hamming_window,
        "blackman": torch.blackman_window,
        "bartlett": torch.bartlett_window,
    }[name]
    return fn(win_length, periodic=False)


def feature_lengths(x_lens: torch.Tensor, hop_length: int) -> torch.Tensor:
    """Valid frames per utterance: ceil(x_lens / hop) as DLE's ``get_seq_len`` (int64 here)."""
    return torch.div(x_lens.long() + hop_length - 1, hop_length, rounding_mode="floor")


def normalize_batch(x: torch.Tensor, x_lens: torch.Tensor, kind: str, eps: float) -> torch.Tensor:
    """DLE ``normalize_batch`` without the loop over the batch.

    x: (B, C, F) features, x_lens: (B,) valid frames. ``(x - mean) / (std + eps)`` with the
    unbiased std over the valid frames. One valid frame (where DLE returns NaN) gives zeros.
    """
    if kind == "none":
        return x
    valid = (torch.arange(x.size(-1), device=x.device)[None, :] < x_lens[:, None]).unsqueeze(1)
    m = valid.to(x.dtype)  # (B, 1, F)
    n = x_lens.to(x.dtype).clamp(min=1)[:, None, None]  # (B, 1, 1)
    if kind == "all_features":
        n = n * x.size(1)
        dims = (1, 2)
    else:
        dims = (2,)
    mean = (x * m).sum(dim=dims, keepdim=True) / n
    var = (((x - mean) * m) ** 2).sum(dim=dims, keepdim=True) / (n - 1).clamp(min=1)
    return (x - mean) / (var.sqrt() + eps)


class FilterbankFeatures(nn.Module):
    """Waveforms to normalised log-mel features, as DLE's ``FilterbankFeatures``.

    Dither is added only in training mode (``module.train()``); no SpecAugment here (see
    ``asr_core.features.augment``). No parameters; the mel matrix and window are buffers.
    """

    def __init__(self, cfg: FilterbankConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or FilterbankConfig()
        self.feature_dim = cfg.n_mels  # what the encoder reads: (B, feature_dim, T)
        self.n_fft, self.hop_length, self.win_length = cfg.n_fft, cfg.hop_length, cfg.win_length
        fb = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.f_max, cfg.mel_scale, cfg.mel_norm)
        window = make_window(cfg.window, cfg.win_length)
        self.register_buffer("fb", fb, persistent=False)
        self.register_buffer("window", window, persistent=False)
        # Real DFT restricted to the window's support (torch.stft centres the window in n_fft):
        # a conv1d that torch.onnx can export, used while exporting (the TorchScript exporter
        # rejects torch.stft's complex output) or when ``use_conv_stft`` is set. Eager torch.stft
        # is ~2-4x faster on CPU; the two agree to ~1e-5 on normalised features.
        self.win_offset = (cfg.n_fft - cfg.win_length) // 2
        k = torch.arange(cfg.n_fft // 2 + 1, dtype=torch.float64)[:, None]
        t = torch.arange(self.win_offset, self.win_offset + cfg.win_length, dtype=torch.float64)
        ang = 2 * math.pi * k * t[None, :] / cfg.n_fft
        basis = torch.cat([torch.cos(ang), -torch.sin(ang)]) * window.double()[None, :]
        self.register_buffer("dft_basis", basis.float().unsqueeze(1), persistent=False)
        self.use_conv_stft = False

    def _power_spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T + n_fft) padded signal -> (B, n_fft // 2 + 1, 1 + T // hop) power."""
        if self.use_conv_stft or torch.onnx.is_in_onnx_export():
            tail = self.n_fft - self.win_offset - self.win_length
            y = F.conv1d(x[:, None, self.win_offset : x.size(1) - tail], self.dft_basis, stride=self.hop_length)
            re, im = y.chunk(2, dim=1)
            return re * re + im * im
        spec = torch.stft(
            x, self.n_fft, self.hop_length, self.win_length, self.window, center=False, return_complex=True
        )
        return spec.real.square() + spec.imag.square()

    def _reflect_pad(self, x: torch.Tensor, x_lens: torch.Tensor) -> torch.Tensor:
        """Pad each row by n_fft // 2 on both sides, reflecting at 0 and at its own length.

        Equivalent to ``torch.stft(center=True, pad_mode='reflect')`` on each utterance alone.
        Utterances shorter than n_fft // 2 + 2 samples (where torch.stft would fail) clamp.
        """
        pad = self.n_fft // 2
        j = torch.arange(pad, device=x.device)[None, :]  # (1, pad)
        last = (x_lens.long() - 1).clamp(min=0)[:, None]  # (B, 1)
        left = torch.gather(x, 1, torch.minimum(pad - j, last))  # x[pad], ..., x[1]
        right = torch.gather(x, 1, (last - 1 - j).clamp(min=0))  # x[len - 2], x[len - 3], ...
        out = torch.cat([left, x, torch.zeros_like(left)], dim=1)  # (B, T + 2 pad)
        # The band right after each row's end takes the reflection; later samples are never
        # read by a valid frame.
        return out.scatter(1, last + 1 + pad + j, right)

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of a padded batch of waveforms.

        Legend: B batch, T samples, F frames (F = 1 + T // hop rounded up to ``pad_to``),
        C mel bins.

        Args:
            x: (B, T) float waveforms, zero padded (the padding is never read).
            x_lens: (B,) valid samples per row.
        Returns:
            feats: (B, C, F), the input's dtype; frames >= feat_lens are 0.
            feat_lens: (B,) int64, ceil(x_lens / hop).
        """
        if not torch.jit.is_tracing():  # checks that would be frozen into an exported graph
            assert x.ndim == 2, x.shape
            assert x_lens.shape == (x.size(0),), (x.shape, x_lens.shape)
            if x_lens.numel() and int(x_lens.max()) > x.size(1):
                raise ValueError(f"x_lens {x_lens.tolist()} exceed the padded length {x.size(1)}")
        dtype = x.dtype
        x = x.float()
        feat_lens = feature_lengths(x_lens, self.hop_length)

        if self.training and self.cfg.dither > 0:
            x = x + self.cfg.dither * torch.randn_like(x)
        if self.cfg.preemph is not None:
            x = torch.cat((x[:, :1], x[:, 1:] - self.cfg.preemph * x[:, :-1]), dim=1)

        x = self._power_spectrum(self._reflect_pad(x, x_lens))
        x = torch.matmul(self.fb, x)  # (C, n_freq) @ (B, n_freq, F)
        if self.cfg.log:
            x = torch.log(x + self.cfg.log_guard)
        x = normalize_batch(x, feat_lens, self.cfg.normalize, self.cfg.norm_eps)

        frames = x.size(-1)
        valid = torch.arange(frames, device=x.device)[None, :] < feat_lens[:, None]
        x = x.masked_fill(~valid.unsqueeze(1), 0.0)
        if self.cfg.pad_to > 0:
            # pad_to - 1 zero frames, then cut: keeps the length symbolic under torch.onnx.
            x = F.pad(x, (0, self.cfg.pad_to - 1))
            x = x[..., : (frames + self.cfg.pad_to - 1) // self.cfg.pad_to * self.cfg.pad_to]
        return x.to(dtype), feat_lens

    def extra_repr(self) -> str:
        c = self.cfg
        return (
            f"n_mels={c.n_mels}, n_fft={c.n_fft}, win={self.win_length}, hop={self.hop_length}, "
            f"normalize={c.normalize!r}, pad_to={c.pad_to}"
        )
