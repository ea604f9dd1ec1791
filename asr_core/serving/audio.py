"""A stream's audio: binary frames -> float32 samples within the stream's limits, then resampled to the
model's rate (the cheap checks on the transport's event loop, the resampling with the decoding)."""

from __future__ import annotations

import numpy as np

from asr_core.serving.protocol import CLOSE_TOO_BIG, AudioFormat, ProtocolError, StreamLimits, decode_frame
from asr_core.serving.resample import StreamResampler


class AudioInput:
    """``decode(frame) -> samples`` at the client's rate per binary message; ``resample(samples)`` of
    those, in order, and ``finish()`` at the end give the samples at the model's rate.

    Counts the audio received (``seconds``) and refuses a frame that would take the stream past
    ``limits.max_stream_seconds``.
    """

    def __init__(self, fmt: AudioFormat, model_rate: int, limits: StreamLimits) -> None:
        self.fmt, self.limits = fmt, limits
        self.received = 0  # samples at the client's rate
        try:
            self.resampler = StreamResampler(fmt.sample_rate, model_rate)
        except ValueError as e:  # no common divisor: the kernel would be too large
            raise ProtocolError(
                "sample_rate", f"cannot resample {fmt.sample_rate} Hz to {model_rate} Hz: {e}"
            ) from None

    @property
    def seconds(self) -> float:
        return self.received / self.fmt.sample_rate

    def decode(self, data: bytes) -> np.ndarray:
        x = decode_frame(data, self.fmt, self.limits)
        if (self.received + x.size) / self.fmt.sample_rate > self.limits.max_stream_seconds:
            raise ProtocolError(
                "audio", f"the stream exceeds the {self.limits.max_stream_seconds:g} s limit", CLOSE_TOO_BIG
            )
        self.received += x.size
        return x

    def resample(self, x: np.ndarray) -> np.ndarray:
        return self.resampler.accept(x)

    def finish(self) -> np.ndarray:
        return self.resampler.finish()
