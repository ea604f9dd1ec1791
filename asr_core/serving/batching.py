"""The live streams of a streaming transducer encoded together (``tasks.serve --batch-streams N``).

At batch 1 an LSTM encoder reads every weight for every frame, so on a CPU one stream's chunk costs
about what a batch of chunks does. Here each stream's decode worker buffers its chunk's features
(in its own thread), then hands the stream to one encoder thread and waits; that thread takes every
stream waiting (up to ``max_batch``), runs the encoder once on their chunks, each stream's LSTM
state on its own batch row, and advances their searches together
(:func:`~asr_core.decoding.rnnt_stream.encode_streams`). Streams that arrive while a round runs
make the next round: there is no added wait, and under light load a round holds one stream.

A stream's transcripts are those it gets alone (to the float rounding of batched products); its
chunk's latency is its round's. The gain is where the encoder's weights dominate a stream's cost
(E6D2's 6 x 1024 LSTMs), not where features and messages do (the small CPU profile).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

from asr_core.decoding.rnnt_stream import Partial, StreamingTranscriber, encode_streams


@dataclass
class _Job:
    transcriber: StreamingTranscriber
    final: bool
    done: Future = field(default_factory=Future)


class StreamBatcher:
    """``run(transcriber, final) -> partials``: encode what a stream has buffered, batched with the
    other streams waiting. Called from the streams' worker threads; the work runs in one thread."""

    def __init__(self, max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.max_batch = max_batch
        self.rounds = self.batched = 0  # encoder rounds run, and the streams they carried (health)
        self._waiting: list[_Job] = []
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="encode-streams", daemon=True)
        self._thread.start()

    def run(self, transcriber: StreamingTranscriber, final: bool) -> list[Partial]:
        """Block until the chunks ``transcriber`` has buffered are encoded and searched (all of them
        when ``final``: the stream has ended)."""
        job = _Job(transcriber, final)
        with self._cv:
            if self._closed:
                raise RuntimeError("the stream batcher is closed")
            self._waiting.append(job)
            self._cv.notify()
        return job.done.result()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._waiting and not self._closed:
                    self._cv.wait()
                if self._closed:
                    for job in self._waiting:
                        job.done.set_exception(RuntimeError("the stream batcher is closed"))
                    return
                jobs, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
            try:
                partials = encode_streams([j.transcriber for j in jobs], [j.final for j in jobs])
            except Exception as e:  # a backend failure fails this round's streams, not the thread
                for j in jobs:
                    j.done.set_exception(e)
                continue
            self.rounds += 1
            self.batched += len(jobs)
            for j, p in zip(jobs, partials):
                j.done.set_result(p)
