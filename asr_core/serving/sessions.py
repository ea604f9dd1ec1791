"""One stream's decoder state: ``accept(samples) -> new partial text or None``, then ``finish() -> result``.

Samples arrive as (n,) float32 at the model's sample rate (the transport has already decoded and
resampled them). A session is used by one stream, one call at a time, from any thread.

- :class:`TransducerStream`: a streaming transducer decodes as audio arrives
  (:class:`~asr_core.decoding.rnnt_stream.StreamingTranscriber`): partials cost nothing extra and the
  final transcript equals the offline one. With the model's stream batcher
  (:mod:`asr_core.serving.batching`) the encoder runs on the chunks of all waiting streams at once.
- :class:`WholeUtteranceStream`: CTC models (and transducers whose encoder sees whole utterances)
  decode the whole utterance when the stream ends, so the final transcript equals the offline one; the
  final's latency is one decode of the whole audio. For live feedback the audio so far is re-decoded
  every ``partial_every`` seconds of audio while it is at most ``partial_max_seconds`` long (each
  re-decode costs a decode of everything so far; 0 turns partials off).
"""

from __future__ import annotations

import numpy as np


class TransducerStream:
    def __init__(self, model) -> None:
        self.model, self.batcher = model, model.batcher
        self.transcriber = model.transcriber()
        self.samples = 0

    def accept(self, samples: np.ndarray) -> str | None:
        self.samples += len(samples)
        if self.batcher is None:
            partials = self.transcriber.accept(samples)
        else:
            self.transcriber.feed(samples)  # the features here, in the stream's thread
            partials = self.batcher.run(self.transcriber, final=False)
        return partials[-1].text if partials else None  # the newest hypothesis; earlier ones are stale

    def finish(self) -> dict:
        if not self.samples:  # a stream ended before any audio: nothing to decode
            return self.model._result([], [], [], 0)
        st = self.transcriber
        if self.batcher is None:
            text = st.finish().text
        else:
            st.end()
            self.batcher.run(st, final=True)
            text = st.close().text
        frames = st.token_frames
        result = self.model._result(st.tokens, frames, [t + 1 for t in frames], self.samples)
        assert result["text"] == text, (result["text"], text)  # one decoding, two views of it
        return result


class WholeUtteranceStream:
    def __init__(self, model, partial_every: float = 1.0, partial_max_seconds: float = 15.0) -> None:
        if partial_every < 0 or partial_max_seconds < 0:
            raise ValueError("partial_every and partial_max_seconds must be >= 0")
        self.model = model
        self.pieces: list[np.ndarray] = []
        self.samples = 0
        self.every = int(partial_every * model.sample_rate)
        self.max_samples = int(partial_max_seconds * model.sample_rate)
        self.next_partial = self.every
        self.text = ""

    def audio(self) -> np.ndarray:
        if len(self.pieces) > 1:  # keep one array, so the next call concatenates only the new pieces
            self.pieces = [np.concatenate(self.pieces)]
        return self.pieces[0] if self.pieces else np.zeros(0, dtype=np.float32)

    def accept(self, samples: np.ndarray) -> str | None:
        self.pieces.append(np.asarray(samples, dtype=np.float32))
        self.samples += len(samples)
        if not self.every or self.samples < self.next_partial or self.samples > self.max_samples:
            return None
        self.next_partial = self.samples + self.every
        text = self.model.transcribe(self.audio())["text"]
        if text == self.text:
            return None
        self.text = text
        return text

    def finish(self) -> dict:
        if not self.samples:
            return self.model._result([], [], [], 0)
        return self.model.transcribe(self.audio())
