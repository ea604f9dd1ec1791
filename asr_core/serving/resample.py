"""Resampling a stream as it arrives, giving the samples :func:`asr_core.data.audio.resample` gives
for the whole signal.

The offline resampler (torchaudio's windowed sinc, applied as a matrix) pads the signal with ``width``
zeros in front and ``width + orig`` behind, and turns each block of ``orig`` input samples into ``new``
output samples, reading the ``2 * width + orig`` padded samples around it. Here a block is computed as
soon as all its input has arrived, and the tail padding is added at :meth:`StreamResampler.finish`: the
same rows through the same kernel, so a stream and a file of the same audio decode alike (samples agree
to float rounding).
"""

from __future__ import annotations

import numpy as np
import torch

from asr_core.data.audio import _sinc_kernel, resampled_frames


class StreamResampler:
    """``accept(x) -> y`` for each piece of (frames,) float32 audio, then ``finish() -> y`` for the rest."""

    def __init__(self, orig_sr: int, new_sr: int) -> None:
        self.orig_sr, self.new_sr = int(orig_sr), int(new_sr)
        self.received = self.emitted = 0
        if self.orig_sr == self.new_sr:
            return
        # raises ValueError for a rate pair whose kernel would be too large (no common divisor)
        self.kernel, self.width, self.orig, _ = _sinc_kernel(self.orig_sr, self.new_sr)
        self.pending = np.zeros(self.width, dtype=np.float32)  # the offline resampler's front padding

    @property
    def passthrough(self) -> bool:
        return self.orig_sr == self.new_sr

    def _blocks(self, final: bool) -> np.ndarray:
        span = self.kernel.shape[0]  # input samples one block reads
        n = (self.pending.size - span) // self.orig + 1 if self.pending.size >= span else 0
        if n <= 0:
            return np.zeros(0, dtype=np.float32)
        with torch.inference_mode():
            x = torch.from_numpy(self.pending[: (n - 1) * self.orig + span])
            y = (x.unfold(0, span, self.orig) @ self.kernel).reshape(-1).numpy()
        self.pending = self.pending[n * self.orig :]
        if final:  # the offline output stops at ceil(frames * new / orig)
            y = y[: max(0, resampled_frames(self.received, self.orig_sr, self.new_sr) - self.emitted)]
        self.emitted += y.size
        return y

    def accept(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32).reshape(-1)
        self.received += x.size
        if self.passthrough:
            self.emitted += x.size
            return x
        self.pending = np.concatenate((self.pending, x))
        return self._blocks(final=False)

    def finish(self) -> np.ndarray:
        """The samples that needed the end of the signal; the resampler is then spent."""
        if self.passthrough:
            return np.zeros(0, dtype=np.float32)
        self.pending = np.concatenate((self.pending, np.zeros(self.width + self.orig, dtype=np.float32)))
        return self._blocks(final=True)
