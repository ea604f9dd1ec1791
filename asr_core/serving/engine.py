"""A loaded model as the server uses it: whole-utterance transcription with word timings, and streams.

Both kinds decode exactly as ``python -m tasks.transcribe`` does (same front end, same network or
exported graphs, greedy), so a file uploaded, a file streamed and the command line agree:

- ``ctc``: the network over the whole utterance, best path per frame. Its alignment (the run of
  frames each token holds) gives the word timings.
- ``transducer``: greedy decoding over the encoder frames; the frame at which each token was emitted
  gives the word timings. A streaming (LSTM) encoder also decodes live: see :mod:`.sessions`.

Every method may be called from several threads at once (one stream per thread at a time): the
backends are thread-safe or wrapped per thread (:class:`asr_core.serving.backends.PerThread`).
"""

from __future__ import annotations

import numpy as np
import torch

from asr_core.serving.words import word_timings


def frame_seconds(model, features) -> float:
    """Seconds per output frame: the front end's hop (one sample for a waveform model) times the
    encoder's subsampling."""
    hop = getattr(features, "hop_length", 1)
    return hop * model.encoder.subsampling / features.cfg.sample_rate


def ctc_alignment(log_probs: torch.Tensor, blank: int) -> tuple[list[int], list[int], list[int]]:
    """Best path of (T, V) log-probs: (tokens, first frame of each, end frame of each). The tokens are
    :func:`asr_core.models.greedy_decode`'s (repeats collapsed, blanks dropped)."""
    tokens, starts, ends = [], [], []
    prev = None
    for t, k in enumerate(log_probs.argmax(dim=-1).tolist()):
        if k != prev and k != blank:
            tokens.append(k)
            starts.append(t)
            ends.append(t + 1)
        elif k == prev and k != blank:
            ends[-1] = t + 1
        prev = k
    return tokens, starts, ends


class ServingModel:
    """What the server needs of a model: ``transcribe(samples) -> result`` and ``stream()``.

    ``samples``: (n,) float32 mono at ``sample_rate``. A result is ``{"text", "words", "audio_seconds"}``.
    """

    kind: str
    streaming: bool  # True: partials come from the decoder as audio arrives (a streaming transducer)
    batcher = None  # a streaming transducer's StreamBatcher when its streams are encoded together

    def __init__(self, backend_name: str, model, features, vocab) -> None:
        self.backend_name, self.features, self.vocab = backend_name, features.eval(), vocab
        self.sample_rate = int(features.cfg.sample_rate)
        self.frame_seconds = frame_seconds(model, features)

    @torch.no_grad()
    def _features(self, samples: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        wave = torch.as_tensor(np.ascontiguousarray(samples, dtype=np.float32)).reshape(1, -1)
        return self.features(wave, torch.tensor([wave.size(1)]))

    def _result(self, tokens, starts, ends, n_samples: int) -> dict:
        return {
            "text": self.vocab.decode(tokens),
            "words": word_timings(self.vocab, tokens, starts, ends, self.frame_seconds),
            "audio_seconds": round(n_samples / self.sample_rate, 3),
        }

    def transcribe(self, samples: np.ndarray) -> dict:
        raise NotImplementedError

    def batch_streams(self, n: int) -> None:
        """Encode the chunks of up to ``n`` live streams in one call (:mod:`asr_core.serving.batching`);
        0 or 1: each stream alone. Only a streaming transducer's encoder has chunks to batch."""
        if n < 0:
            raise ValueError(f"batch_streams must be >= 0, got {n}")

    def stream(self, **options):
        """A new stream's decoder state (see :mod:`asr_core.serving.sessions`)."""
        from asr_core.serving.sessions import TransducerStream, WholeUtteranceStream

        if self.streaming:
            return TransducerStream(self)
        return WholeUtteranceStream(self, **options)


class CtcServingModel(ServingModel):
    kind, streaming = "ctc", False

    def __init__(self, backend_name: str, runner, model, features, vocab) -> None:
        super().__init__(backend_name, model, features, vocab)
        self.runner, self.blank = runner, vocab.blank  # runner: the torch model or an export runner

    @torch.no_grad()
    def transcribe(self, samples: np.ndarray) -> dict:
        feats, lens = self._features(samples)
        log_probs, out_lens = self.runner(feats, lens)
        tokens, starts, ends = ctc_alignment(log_probs[0, : int(out_lens[0])].float().cpu(), self.blank)
        return self._result(tokens, starts, ends, len(samples))


class TransducerServingModel(ServingModel):
    kind = "transducer"

    def __init__(
        self,
        backend_name: str,
        backend,
        model,
        features,
        vocab,
        chunk_frames: int = 10,
        max_symbols: int = 5,
    ) -> None:
        super().__init__(backend_name, model, features, vocab)
        self.backend, self.chunk_frames, self.max_symbols = backend, chunk_frames, max_symbols
        self.streaming = bool(backend.streaming)

    def batch_streams(self, n: int) -> None:
        super().batch_streams(n)
        if n > 1 and self.streaming:
            from asr_core.serving.batching import StreamBatcher

            self.batcher = StreamBatcher(n)

    @torch.no_grad()
    def transcribe(self, samples: np.ndarray) -> dict:
        from asr_core.decoding.rnnt_stream import greedy_decoder

        feats, lens = self._features(samples)
        f, f_lens = self.backend.encode_utterances(feats, lens)
        dec = greedy_decoder(self.backend, self.max_symbols)
        state = dec.advance(dec.init(1), f, f_lens)
        frames = state.frames[0]
        return self._result(state.hyps[0], frames, [t + 1 for t in frames], len(samples))

    def transcriber(self):
        """A :class:`~asr_core.decoding.rnnt_stream.StreamingTranscriber` on this model's backend."""
        from asr_core.decoding.rnnt_stream import StreamingTranscriber

        return StreamingTranscriber(
            self.backend, self.features, self.vocab, chunk_frames=self.chunk_frames, max_symbols=self.max_symbols
        )
