"""Deterministic test audio: a few harmonics with a slow envelope and a little noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def make_wave(seconds: float, sample_rate: int = 16000, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Float32 audio in [-1, 1], shape (frames,) for mono or (frames, channels)."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    t = np.arange(n, dtype=np.float64) / sample_rate
    f0 = 100.0 + 150.0 * rng.random()
    x = sum(np.sin(2 * np.pi * f0 * k * t + rng.random() * 6.28) / k for k in range(1, 6))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
    x = 0.25 * x * env + 0.01 * rng.standard_normal(n)
    x = np.clip(x, -1.0, 1.0).astype(np.float32)
    if channels == 1:
        return x
    return np.stack([x * (0.8 + 0.2 * c / channels) for c in range(channels)], axis=1)


def write_audio(
    path: str | Path,
    seconds: float,
    sample_rate: int = 16000,
    channels: int = 1,
    seed: int = 0,
    format: str | None = None,
    subtype: str | None = None,
) -> Path:
    """Write ``make_wave`` output; the format follows the suffix unless given."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, make_wave(seconds, sample_rate, channels, seed), sample_rate, format=format, subtype=subtype)
    return path
