"""Log-mel features for the transducer, offline and streamed, bit for bit the same.

The transducer uses the toolkit's :class:`FilterbankFeatures` (80 mels, n_fft 512, 20/10 ms
Hann, pre-emphasis 0.97, natural log) with no per-utterance normalisation (the model's
LayerNorm replaces CMVN) and no padding to a multiple of 16.

Exactness: :class:`StreamingFilterbank` runs the same pre-emphasis, reflection padding, STFT,
mel matrix and log as the offline module, on the samples each frame reads. Two details make
the frames *identical* rather than close: a frame is emitted only once every sample of its
n_fft window has arrived (the last frames, which read the reflection past the end, only at
the end of the stream), and the mel matmul always runs on at least ``MIN_FRAMES`` columns
(BLAS uses other kernels, with other rounding, for very narrow products): offline, short
batches are padded to that width and cut back.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from asr_core.features import FilterbankConfig, FilterbankFeatures

MIN_FRAMES = 16
RNNT_FEATURES: dict[str, Any] = {"n_mels": 80, "n_fft": 512, "normalize": "none", "pad_to": 0}


def rnnt_features_config(overrides: dict[str, Any] | None = None) -> FilterbankConfig:
    """The transducer's feature config: :data:`RNNT_FEATURES` with ``overrides`` applied."""
    return FilterbankConfig.from_dict({**RNNT_FEATURES, **(overrides or {})})


class RNNTFilterbank(FilterbankFeatures):
    """``FilterbankFeatures`` whose output is exactly what :class:`StreamingFilterbank` streams.

    Returns (B, N, max(feat_lens)) features: no frame past the longest utterance's length.
    """

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        min_samples = (MIN_FRAMES - 1) * self.hop_length
        if x.size(1) < min_samples:
            x = nn.functional.pad(x, (0, min_samples - x.size(1)))
        feats, feat_lens = super().forward(x, x_lens)
        width = int(feat_lens.max()) if feat_lens.numel() else 0
        return feats[..., :width], feat_lens


class StreamingFilterbank:
    """Audio in pieces of any size -> the offline features' frames, as soon as they are final.

    ``accept(samples)`` returns the (N, n) frames completed by these samples (n may be 0);
    ``finish()`` the rest (the frames that read the reflection at the end). Concatenated they
    equal ``RNNTFilterbank`` on the whole signal (eval mode), exactly.
    """

    def __init__(self, module: FilterbankFeatures) -> None:
        cfg = module.cfg
        if cfg.normalize != "none":
            raise ValueError(f"streaming needs features without per-utterance normalisation, "
                             f"got normalize={cfg.normalize!r}")
        self.m = module.eval()
        self.hop, self.n_fft, self.pad = module.hop_length, module.n_fft, module.n_fft // 2
        self.reset()

    def reset(self) -> None:
        self.buf = torch.zeros(0)  # pre-emphasised samples from absolute index self.start
        self.start = 0
        self.received = 0
        self.next_frame = 0
        self.last_raw: float | None = None

    def _preemph(self, x: torch.Tensor) -> torch.Tensor:
        a = self.m.cfg.preemph
        if a is None or x.numel() == 0:
            return x
        prev = x[:1] if self.last_raw is None else torch.tensor([self.last_raw], dtype=x.dtype)
        y = torch.cat((x[:1] if self.last_raw is None else x[:1] - a * prev, x[1:] - a * x[:-1]))
        return y

    def _frames(self, padded: torch.Tensor, t0: int, t1: int, offset: int) -> torch.Tensor:
        """Frames [t0, t1) from ``padded``, the padded signal starting at padded index ``offset``."""
        if t1 <= t0:
            return torch.zeros(self.m.cfg.n_mels, 0)
        a = t0 * self.hop - offset
        seg = padded[a: a + (t1 - t0 - 1) * self.hop + self.n_fft]
        spec = self.m._power_spectrum(seg[None])  # (1, n_freq, t1 - t0)
        width = spec.size(-1)
        if width < MIN_FRAMES:  # the same kernel as the offline (>= MIN_FRAMES wide) product
            spec = nn.functional.pad(spec, (0, MIN_FRAMES - width))
        x = torch.matmul(self.m.fb, spec)[..., :width]
        if self.m.cfg.log:
            x = torch.log(x + self.m.cfg.log_guard)
        return x[0]

    @torch.no_grad()
    def accept(self, samples: torch.Tensor) -> torch.Tensor:
        samples = torch.as_tensor(samples, dtype=torch.float32).reshape(-1)
        if samples.numel():
            y = self._preemph(samples)
            self.last_raw = float(samples[-1])
            self.buf = torch.cat((self.buf, y))
            self.received += samples.numel()
        # frame t reads padded [t hop, t hop + n_fft) = samples [t hop - pad, t hop + pad), and
        # frame 0's reflection reads sample `pad`: wait for sample t hop + pad
        t1 = max(self.next_frame, (self.received - self.pad - 1) // self.hop + 1)
        if t1 == self.next_frame:
            return torch.zeros(self.m.cfg.n_mels, 0)
        if self.start == 0:  # frames 0 and 1 read the reflection at the start
            left = self.buf[1: self.pad + 1].flip(0)
            padded, offset = torch.cat((left, self.buf)), 0
        else:
            padded, offset = self.buf, self.start + self.pad  # padded index = sample index + pad
        out = self._frames(padded, self.next_frame, t1, offset)
        self.next_frame = t1
        keep = max(0, t1 * self.hop - self.pad)  # the first sample a later frame reads
        if keep > self.start:
            self.buf = self.buf[keep - self.start:]
            self.start = keep
        return out

    @torch.no_grad()
    def finish(self) -> torch.Tensor:
        """The remaining frames, up to ceil(samples / hop); then the stream is reset."""
        n = self.received
        total = -(-n // self.hop)
        if total <= self.next_frame:
            self.reset()
            return torch.zeros(self.m.cfg.n_mels, 0)
        if self.start == 0:  # the whole signal is here: the offline padding, as is
            padded = self.m._reflect_pad(self.buf[None], torch.tensor([n]))[0]
            offset = 0
        else:
            j = torch.arange(self.pad)
            right = self.buf[(n - 2 - j).clamp(min=0) - self.start]
            padded = torch.cat((self.buf, right, torch.zeros(self.pad)))
            offset = self.start + self.pad
        out = self._frames(padded, self.next_frame, total, offset)
        self.reset()
        return out
