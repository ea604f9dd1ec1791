"""Audio file I/O and resampling for the data stages.

Decoding and encoding go through ``soundfile`` (libsndfile: FLAC, WAV, MP3, OGG,
NIST SPHERE, ...); torchaudio's own file I/O is not used (it now needs TorchCodec).
Resampling is torchaudio's windowed-sinc resampler with the kernel built once per
(orig, new) rate pair and cached, and applied as a matrix product (see
:func:`resample` for why not ``conv1d``).

Shapes: ``x`` is float32 ``(frames, channels)`` as read, ``(frames,)`` once mono.
"""

from __future__ import annotations

import functools
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from asr_core.io.atomic import atomic_write_bytes

# Output formats the prepare stage writes: name -> libsndfile major format.
FORMATS: dict[str, str] = {"flac": "FLAC", "wav": "WAV"}


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says, before any sample is decoded."""

    sample_rate: int
    channels: int
    frames: int
    format: str  # libsndfile major format, e.g. "FLAC", "WAV", "MP3"
    subtype: str  # e.g. "PCM_16", "PCM_24", "FLOAT"

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Read the header only; raises ``soundfile.LibsndfileError`` if libsndfile cannot open it."""
    with sf.SoundFile(path) as f:
        return AudioInfo(f.samplerate, f.channels, f.frames, f.format, f.subtype)


def segment_frames(sample_rate: int, offset: float = 0.0, duration: float | None = None) -> tuple[int, int]:
    """(start, count) in frames for a segment in seconds; count -1 means "to the end"."""
    if offset < 0:
        raise ValueError(f"offset must be >= 0 seconds, got {offset}")
    if duration is not None and duration < 0:
        raise ValueError(f"duration must be >= 0 seconds or None, got {duration}")
    start = round(offset * sample_rate)
    count = -1 if duration is None else round(duration * sample_rate)
    return start, count


def load_audio(
    path: str | os.PathLike | io.BytesIO, offset: float = 0.0, duration: float | None = None, dtype: str = "float32"
) -> tuple[np.ndarray, int]:
    """Decode a file, or the segment ``[offset, offset + duration)`` seconds of it.

    Only the segment is decoded: the decoder seeks to ``offset`` first. A segment
    that starts at or past the end of the file gives zero frames; one that runs
    past the end is cut at the end. Returns ``(x, sample_rate)`` with ``x`` of
    shape ``(frames, channels)``; float dtypes are in [-1, 1).
    """
    with sf.SoundFile(path) as f:
        start, count = segment_frames(f.samplerate, offset, duration)
        if start and start >= f.frames:
            return np.zeros((0, f.channels), dtype=dtype), f.samplerate
        if start:
            f.seek(start)
        x = f.read(count, dtype=dtype, always_2d=True)
    return x, f.samplerate


def to_mono(x: np.ndarray) -> np.ndarray:
    """(frames, channels) or (frames,) -> (frames,) float32, averaging the channels."""
    if x.ndim == 1:
        return x.astype(np.float32, copy=False)
    assert x.ndim == 2, x.shape
    if x.shape[1] == 1:
        return np.ascontiguousarray(x[:, 0], dtype=np.float32)
    return x.mean(axis=1, dtype=np.float32)


_MAX_KERNEL = 1 << 24  # kernel elements (64 MB float32); 44100 -> 16000 needs 441 x 160


@functools.lru_cache(maxsize=32)
def _sinc_kernel(orig_sr: int, new_sr: int) -> tuple[torch.Tensor, int, int, int]:
    """torchaudio's resampling kernel for one rate pair as a matrix, built once.

    Returns ``(W, width, orig, new)``: ``W`` is (2 * width + orig, new) with
    ``orig``/``new`` the rates divided by their gcd. Building it costs ~6 ms, more
    than resampling a 4 s clip with it.
    """
    g = math.gcd(orig_sr, new_sr)
    if (orig_sr // g) * (new_sr // g) > _MAX_KERNEL:
        # e.g. 22051 -> 16000 Hz would need a 16000 x 22069 kernel (1.4 GB)
        raise ValueError(f"resampling {orig_sr} -> {new_sr} Hz needs too large a kernel (gcd {g})")
    t = torchaudio.transforms.Resample(orig_sr, new_sr)  # kernel (new, 1, L) computed in float64
    return t.kernel[:, 0, :].T.contiguous(), t.width, orig_sr // g, new_sr // g


def resample(x: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """Resample along the first axis: (frames,) or (frames, channels) float32.

    torchaudio's resampler (``torchaudio.transforms.Resample`` defaults: Hann-windowed
    sinc, 6 zero crossings, rolloff 0.99) with its kernel applied as one strided
    matrix product instead of ``conv1d``: oneDNN builds a new convolution primitive
    for every input length, which made resampling clips of varying length ~5x slower
    than the arithmetic. Output frames: ``ceil(frames * new_sr / orig_sr)``;
    samples match torchaudio's to ~1e-7.
    """
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {new_sr}")
    x = np.asarray(x, dtype=np.float32)
    if orig_sr == new_sr:
        return x
    n = x.shape[0]
    out_frames = resampled_frames(n, orig_sr, new_sr)
    if n == 0:
        return np.zeros((0,) + x.shape[1:], dtype=np.float32)
    w, width, orig, _ = _sinc_kernel(int(orig_sr), int(new_sr))
    with torch.inference_mode():
        t = torch.from_numpy(np.ascontiguousarray(x.T))  # (channels, frames) or (frames,)
        t = torch.nn.functional.pad(t[None], (width, width + orig))[0]
        # block b of ``orig`` input frames gives ``new`` output frames; row b of the
        # unfolded view holds the 2 * width + orig input frames they depend on
        y = t.unfold(-1, w.shape[0], orig) @ w  # (..., blocks, new)
        y = y.reshape(*y.shape[:-2], -1)[..., :out_frames]
    return np.ascontiguousarray(y.numpy().T)


def to_pcm16(x: np.ndarray) -> np.ndarray:
    """Float in [-1, 1) -> int16, rounding and clipping (resampling can overshoot 1.0).

    Scale 32768 is the inverse of how libsndfile reads int16 as float, so a 16-bit
    file read as float32 and written back is bit-exact.
    """
    if x.dtype == np.int16:
        return x
    return np.clip(np.rint(x * 32768.0), -32768, 32767).astype(np.int16)


def encode_audio(x: np.ndarray, sr: int, fmt: str = "flac") -> bytes:
    """Encode (frames,) or (frames, channels) audio as 16-bit PCM FLAC or WAV bytes."""
    if fmt not in FORMATS:
        raise ValueError(f"unsupported output format {fmt!r}; expected one of {sorted(FORMATS)}")
    buf = io.BytesIO()
    # Encoding into memory then writing once is ~2x faster than letting libsndfile
    # write a file in small pieces; int16 input skips libsndfile's float conversion.
    sf.write(buf, to_pcm16(x), sr, format=FORMATS[fmt], subtype="PCM_16")
    return buf.getvalue()


def write_audio_file(path: str | os.PathLike, x: np.ndarray, sr: int, fmt: str = "flac") -> int:
    """Write 16-bit PCM FLAC/WAV atomically (temp file beside ``path``, then rename).

    Returns the number of bytes written.
    """
    data = encode_audio(x, sr, fmt)
    atomic_write_bytes(path, data)
    return len(data)


def resampled_frames(frames: int, orig_sr: int, new_sr: int) -> int:
    """Number of frames :func:`resample` returns for ``frames`` input frames (exact integer ceil)."""
    return -(-frames * new_sr // orig_sr)


def read_wave(path: str | os.PathLike, sample_rate: int) -> torch.Tensor:
    """Any file soundfile reads -> (samples,) float32 mono at ``sample_rate``."""
    x, sr = load_audio(Path(path))
    x = to_mono(x)
    if sr != sample_rate:
        x = resample(x, sr, sample_rate)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
