"""Streaming resampling gives the offline resampler's samples, whatever the pieces the audio comes in."""

from __future__ import annotations

import numpy as np
import pytest

from asr_core.data.audio import resample
from asr_core.serving.resample import StreamResampler


@pytest.mark.parametrize("rates", [(8000, 16000), (44100, 16000), (48000, 16000), (22050, 16000), (16000, 16000)])
def test_stream_resampler_equals_offline_resample(rates):
    rng = np.random.default_rng(sum(rates))
    for n in (0, 1, 7, 441, 12345):
        x = rng.standard_normal(n).astype(np.float32)
        r = StreamResampler(*rates)
        pieces, i = [], 0
        while i < n:
            k = int(rng.integers(1, 2000))
            pieces.append(r.accept(x[i : i + k]))
            i += k
        pieces.append(r.finish())
        got, want = np.concatenate(pieces), resample(x, *rates)
        assert got.shape == want.shape, (rates, n)
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)  # matrix products of other sizes round alike


def test_stream_resampler_refuses_a_rate_pair_without_a_small_kernel():
    with pytest.raises(ValueError, match="too large a kernel"):
        StreamResampler(22051, 16000)
