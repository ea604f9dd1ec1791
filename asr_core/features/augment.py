"""Augmentations of the QuartzNet / Jasper recipes: SpecAugment, speed perturbation, silence trim.

Every random draw goes through a ``torch.Generator`` that can be seeded, so a run with a seed
is reproducible; all draws are made on the CPU (cheap: a few numbers per utterance), so the
same seed gives the same masks on any device.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn


class _DictMixin:
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        unknown = set(d) - {f.name for f in fields(cls)}  # type: ignore[arg-type]
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
        return cls(**d)


def _generator(seed: int | None) -> torch.Generator:
    g = torch.Generator()
    if seed is None:
        g.seed()
    else:
        g.manual_seed(seed)
    return g


# ---------------------------------------------------------------------------------------------
# SpecAugment


@dataclass
class SpecAugmentConfig(_DictMixin):
    """Mask counts and inclusive width ranges (bins / frames). Defaults: DLE QuartzNet."""

    freq_masks: int = 2
    min_freq: int = 0
    max_freq: int = 15
    time_masks: int = 2
    min_time: int = 0
    max_time: int = 55
    # Adaptive time masks (Park et al. 2020): a time mask also covers at most this fraction of the
    # utterance's frames. DLE's 55 frames would hide most of a one-word clip (~40 frames);
    # None: the absolute widths only.
    max_time_ratio: float | None = None
    fill_value: float = 0.0
    # Frequency warping, drawn per utterance before the masks (VTLP, Jaitly & Hinton 2013, on the
    # feature bins): bin k reads bin k * a, a uniform in [1 - w, 1 + w], linearly interpolated, so
    # a voice's formants move up or down by up to w. 0: off (no draw: other settings' streams unchanged).
    max_freq_warp: float = 0.0

    def __post_init__(self) -> None:
        if not (0 <= self.min_freq <= self.max_freq and 0 <= self.min_time <= self.max_time):
            raise ValueError(f"bad mask width ranges: {self}")
        if self.max_time_ratio is not None and not 0 < self.max_time_ratio <= 1:
            raise ValueError(f"max_time_ratio must be in (0, 1] or null, got {self.max_time_ratio}")
        if self.freq_masks < 0 or self.time_masks < 0:
            raise ValueError(f"mask counts must be >= 0: {self}")
        if not 0 <= self.max_freq_warp < 0.5:
            raise ValueError(f"max_freq_warp must be in [0, 0.5), got {self.max_freq_warp}")

    @classmethod
    def quartznet(cls) -> SpecAugmentConfig:
        return cls(freq_masks=2, max_freq=15, time_masks=2, max_time=55)

    @classmethod
    def jasper(cls) -> SpecAugmentConfig:
        return cls(freq_masks=2, max_freq=20, time_masks=2, max_time=75)


class SpecAugment(nn.Module):
    """Frequency and time masks (Park et al. 2019), applied in training mode only.

    Unlike DLE, which may place time masks over the padding, every mask lies inside the
    utterance's valid frames (a mask wider than the utterance is cut to its length), and the
    mask start is uniform over all positions where the mask fits.
    """

    def __init__(self, cfg: SpecAugmentConfig | None = None, seed: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg or SpecAugmentConfig()
        self.generator = _generator(seed)

    def manual_seed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def _spans(
        self, n: int, lo: int, hi: int, size: torch.Tensor, cap: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, n) starts and widths with width <= size (and <= cap) and start uniform in [0, size - width]."""
        b = size.size(0)
        width = torch.randint(lo, hi + 1, (b, n), generator=self.generator)
        width = torch.minimum(width, size[:, None] if cap is None else torch.minimum(size, cap)[:, None])
        start = (torch.rand(b, n, generator=self.generator) * (size[:, None] - width + 1)).floor().long()
        return start, width

    @staticmethod
    def _mask(start: torch.Tensor, width: torch.Tensor, extent: int, device: torch.device) -> torch.Tensor:
        """(B, n) spans -> (B, extent) bool, True inside any span."""
        pos = torch.arange(extent, device=device)[None, None, :]
        start, width = start.to(device)[..., None], width.to(device)[..., None]
        return ((pos >= start) & (pos < start + width)).any(dim=1)

    def _warp(self, x: torch.Tensor) -> torch.Tensor:
        """Each row's bin axis stretched (a > 1) or squeezed (a < 1) by its own factor a."""
        b, n_bins, frames = x.shape
        w = self.cfg.max_freq_warp
        a = 1.0 + (2.0 * torch.rand(b, 1, generator=self.generator) - 1.0) * w
        src = (torch.arange(n_bins)[None, :] * a).clamp(max=n_bins - 1).to(x.device)  # (B, C)
        lo = src.floor().long()
        hi = (lo + 1).clamp(max=n_bins - 1)
        frac = (src - lo).to(x.dtype)[..., None]
        below = x.gather(1, lo[..., None].expand(b, n_bins, frames))
        above = x.gather(1, hi[..., None].expand(b, n_bins, frames))
        return below * (1 - frac) + above * frac

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> torch.Tensor:
        """x: (B, C, F) features, x_lens: (B,) valid frames -> masked copy (identity in eval)."""
        assert x.ndim == 3, x.shape
        if not self.training:
            return x
        c = self.cfg
        b, n_bins, frames = x.shape
        if c.max_freq_warp > 0:
            x = self._warp(x)
        mask = torch.zeros(b, n_bins, frames, dtype=torch.bool, device=x.device)
        if c.freq_masks > 0:
            f0, fw = self._spans(c.freq_masks, c.min_freq, c.max_freq, torch.full((b,), n_bins))
            mask |= self._mask(f0, fw, n_bins, x.device)[:, :, None]
        if c.time_masks > 0:
            lens = x_lens.detach().long().cpu().clamp(max=frames)
            cap = None if c.max_time_ratio is None else (lens.double() * c.max_time_ratio).floor().long()
            t0, tw = self._spans(c.time_masks, c.min_time, c.max_time, lens, cap)
            mask |= self._mask(t0, tw, frames, x.device)[:, None, :]
        # frequency masks stop at the utterance's end too: padding frames stay 0
        valid = torch.arange(frames, device=x.device)[None, :] < x_lens.to(x.device)[:, None]
        mask &= valid[:, None, :]
        return x.masked_fill(mask, c.fill_value)


# ---------------------------------------------------------------------------------------------
# Speed perturbation


@dataclass
class SpeedPerturbConfig(_DictMixin):
    """Speed factors drawn uniformly from the grid min_rate, min_rate + step, ..., max_rate.

    The grid keeps the number of distinct resampling kernels small (31 for the defaults) so
    they are built once and cached. ``p`` is the probability of perturbing an utterance
    (DLE's QuartzNet recipe perturbs every one).
    """

    min_rate: float = 0.85
    max_rate: float = 1.15
    step: float = 0.01
    p: float = 1.0

    def __post_init__(self) -> None:
        if not (0 < self.min_rate <= self.max_rate and self.step > 0 and 0 <= self.p <= 1):
            raise ValueError(f"bad speed perturbation config: {self}")

    def grid(self) -> list[float]:
        n = round((self.max_rate - self.min_rate) / self.step)
        return [round(self.min_rate + i * self.step, 6) for i in range(n + 1)]


@lru_cache(maxsize=128)
def _resampler(orig_freq: int, new_freq: int) -> torchaudio.transforms.Resample:
    g = math.gcd(orig_freq, new_freq)
    return torchaudio.transforms.Resample(orig_freq // g, new_freq // g)


def speed_perturb(wave: torch.Tensor, sample_rate: int, factor: float, resolution: float = 0.01) -> torch.Tensor:
    """Play ``wave`` ``factor`` times faster: (..., T) -> (..., ~T / factor).

    sox ``speed`` convention, as DLE's torch data layer: factor 1.1 shortens by 1.1 and
    raises pitch. Implemented as band-limited sinc resampling from ``sample_rate * factor``
    to ``sample_rate`` (torchaudio, Hann-windowed sinc, 6 zero crossings); ``factor`` is
    rounded to a multiple of ``resolution`` so its kernel can be cached (one per grid point).
    """
    if factor <= 0:
        raise ValueError(f"speed factor must be > 0, got {factor}")
    k = round(factor / resolution)
    unit = round(sample_rate * resolution)  # 160 for 16 kHz and 0.01
    if abs(unit - sample_rate * resolution) > 1e-6 or k == 0:
        raise ValueError(f"resolution {resolution} does not divide sample_rate {sample_rate}")
    orig, new = k * unit, sample_rate
    if orig == new:
        return wave
    resampler = _resampler(orig, new)
    return resampler(wave.float()).to(wave.dtype)


class SpeedPerturb:
    """Draws a grid factor per call and applies ``speed_perturb``; seeded for reproducibility."""

    def __init__(self, cfg: SpeedPerturbConfig | None = None, seed: int | None = None) -> None:
        self.cfg = cfg or SpeedPerturbConfig()
        self.generator = _generator(seed)
        self._grid = self.cfg.grid()

    def sample_factor(self) -> float:
        if self.cfg.p < 1 and torch.rand(1, generator=self.generator).item() >= self.cfg.p:
            return 1.0
        return self._grid[int(torch.randint(len(self._grid), (1,), generator=self.generator))]

    def __call__(self, wave: torch.Tensor, sample_rate: int) -> tuple[torch.Tensor, float]:
        """Returns the perturbed wave and the factor used."""
        factor = self.sample_factor()
        return speed_perturb(wave, sample_rate, factor, self.cfg.step), factor


# ---------------------------------------------------------------------------------------------
# Silence trimming


@dataclass
class TrimSilenceConfig(_DictMixin):
    """``librosa.effects.trim`` defaults, which DLE's torch data layer uses (top_db 60)."""

    top_db: float = 60.0
    frame_length: int = 2048
    hop_length: int = 512


def nonsilent_interval(
    wave: torch.Tensor, top_db: float = 60.0, frame_length: int = 2048, hop_length: int = 512
) -> tuple[int, int]:
    """[start, end) samples of the non-silent part of a 1-D wave, as ``librosa.effects.trim``.

    Frames of ``frame_length`` every ``hop_length`` samples, centred (zero padded by
    frame_length // 2); a frame is silent when its RMS is more than ``top_db`` below the
    loudest frame's. start = first loud frame * hop, end = (last loud frame + 1) * hop,
    clipped to the length. As in librosa, the threshold is relative, so an all-zero wave has
    no loud frame below its (zero) peak and is kept whole; an empty wave gives (0, 0).
    """
    assert wave.ndim == 1, wave.shape
    n = wave.size(0)
    if n == 0:
        return 0, 0
    x = F.pad(wave.float()[None, None, :], (frame_length // 2, frame_length // 2))[0, 0]
    if x.size(0) < frame_length:
        x = F.pad(x, (0, frame_length - x.size(0)))
    frames = x.unfold(0, frame_length, hop_length)  # (n_frames, frame_length)
    power = frames.square().mean(dim=1)
    # librosa: 10 log10(max(amin, p)) - 10 log10(max(amin, ref)), amin 1e-10 on RMS**2
    db = 10 * torch.log10(power.clamp(min=1e-10)) - 10 * torch.log10(power.max().clamp(min=1e-10))
    loud = torch.nonzero(db > -top_db).flatten()
    if loud.numel() == 0:
        return 0, 0
    start = int(loud[0]) * hop_length
    end = min(n, (int(loud[-1]) + 1) * hop_length)
    return start, end


def trim_silence(
    wave: torch.Tensor, top_db: float = 60.0, frame_length: int = 2048, hop_length: int = 512
) -> torch.Tensor:
    """Leading and trailing silence removed (see ``nonsilent_interval``); 1-D in, 1-D out."""
    start, end = nonsilent_interval(wave, top_db, frame_length, hop_length)
    return wave[start:end]
