"""The stream batcher: streams that wait while a round runs go through the encoder together, each
with the transcript it gets alone, and a failing backend fails only that round's streams."""

from __future__ import annotations

import threading
import time

import pytest
import soundfile as sf
import torch

from asr_core.decoding.rnnt_stream import StreamingTranscriber, TorchBackend, stream_file
from asr_core.io.jsonl import read_jsonl
from asr_core.models.artifact import load_model
from asr_core.serving.batching import StreamBatcher
from tests.support import noisy_model


class GatedBackend:
    """A backend whose first encoder call waits for ``gate`` (``entered`` says it has begun); it records
    each call's batch size."""

    def __init__(self, inner) -> None:
        self.inner, self.gate, self.entered, self.batches, self.fail = (
            inner,
            threading.Event(),
            threading.Event(),
            [],
            False,
        )
        for name in ("blank", "streaming", "stack", "time_reduction"):
            setattr(self, name, getattr(inner, name))

    def encode(self, s, s_lens, state):
        if not self.batches:
            self.entered.set()
            self.gate.wait(30)
        self.batches.append(s.size(0))
        if self.fail:
            raise RuntimeError("backend down")
        return self.inner.encode(s, s_lens, state)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture(scope="module")
def streams(trained):
    model_path, corpus = trained
    model, features, vocab = load_model(noisy_model(model_path))
    waves = [
        torch.from_numpy(sf.read(corpus / r["audio_filepath"], dtype="float32")[0])
        for r in read_jsonl(corpus / "test.jsonl")
    ]
    alone = []
    for w in waves:
        st = StreamingTranscriber(TorchBackend(model), features, vocab, chunk_frames=2)
        alone.append(list(stream_file(st, w))[-1].text)
    return model, features, vocab, waves, alone


def _wait_for(cond, what: str) -> None:
    deadline = time.monotonic() + 30
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def _stream_whole(batcher: StreamBatcher, st: StreamingTranscriber, wave: torch.Tensor, out: list, i: int) -> None:
    try:
        st.feed(wave)
        st.end()
        batcher.run(st, final=True)
        out[i] = st.close().text
    except Exception as e:  # the test reads it
        out[i] = e


@pytest.mark.parametrize("max_batch, rounds", [(8, [1, 3]), (2, [1, 2, 1])])
def test_streams_waiting_during_a_round_are_encoded_together(streams, max_batch, rounds):
    model, features, vocab, waves, alone = streams
    be = GatedBackend(TorchBackend(model))
    batcher = StreamBatcher(max_batch)
    lanes = [StreamingTranscriber(be, features, vocab, chunk_frames=200) for _ in waves]  # one chunk a stream
    out: list = [None] * len(waves)
    threads = [threading.Thread(target=_stream_whole, args=(batcher, lanes[i], waves[i], out, i)) for i in range(4)]
    threads[0].start()
    assert be.entered.wait(30), "the first stream's round did not start"
    for t in threads[1:]:
        t.start()
    _wait_for(lambda: len(batcher._waiting) == 3, "the other streams did not queue")
    be.gate.set()
    for t in threads:
        t.join(30)
    batcher.close()
    assert be.batches == rounds  # the three that waited went through in as few calls as max_batch allows
    assert out == alone[:4] and batcher.batched == 4 and any(alone[:4])


def test_a_failing_round_fails_its_streams_and_the_batcher_goes_on(streams):
    model, features, vocab, waves, alone = streams
    be = GatedBackend(TorchBackend(model))
    be.gate.set()
    batcher = StreamBatcher(4)
    out: list = [None]
    be.fail = True
    _stream_whole(batcher, StreamingTranscriber(be, features, vocab), waves[0], out, 0)
    assert isinstance(out[0], RuntimeError) and "backend down" in str(out[0])
    be.fail = False
    _stream_whole(batcher, StreamingTranscriber(be, features, vocab, chunk_frames=2), waves[1], out, 0)
    assert out[0] == alone[1]
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.run(StreamingTranscriber(be, features, vocab), final=True)
