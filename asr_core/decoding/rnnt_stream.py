"""Exact streaming transducer decoding: audio chunks in, partial hypotheses out.

Per chunk of audio: :class:`~asr_core.models.rnnt.features.StreamingFilterbank` gives the
offline feature frames as soon as they are final; every ``chunk_frames`` stacked frames
(``chunk_frames * stack`` feature frames, edgedict's ``step_n_frame``) go through the encoder
with its LSTM state carried, and the greedy decoder advances over the new encoder frames
with the prediction network's state carried. At the end the remaining frames go through as
a shorter, length-masked chunk, as the offline encoder masks them.

Because the features are identical, the stacks and the time reduction line up with the
offline ones (``chunk_frames`` is a multiple of the reduction), and the decoder is the same
code, streamed greedy transcripts equal offline greedy ones; the encoder outputs agree to
float rounding (an LSTM's input product over a 10-frame chunk and over a whole utterance
may round differently).

Backends implement :class:`TransducerBackend`: PyTorch here, onnxruntime / OpenVINO in
``asr_core.export.rnnt_runtime``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from asr_core.decoding.rnnt_greedy import GreedyDecoder
from asr_core.models.rnnt.features import StreamingFilterbank
from asr_core.models.rnnt.frontend import stack_frames

DEFAULT_CHUNK_FRAMES = 10  # stacked frames per encoder call: 300 ms of audio (edgedict step_n_frame 10)


class TransducerBackend(Protocol):
    """The three graphs the decoders need. Every backend encodes whole utterances; a streaming one
    (``streaming`` True: the LSTM transcriber) also encodes chunks with its state carried
    (``stack``, ``time_reduction``, ``encode``, ``encoder_state``; a row per stream)."""

    streaming: bool
    blank: int

    def encode_utterances(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (B, N, F) -> (f (B, T', D) float32 on the CPU, f_lens)."""

    def encode(self, s: torch.Tensor, s_lens: torch.Tensor, state: tuple) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        """Streaming only: stacked, not yet normalised frames (B, S, N*k) -> (f (B, T', D), f_lens, state)."""

    def encoder_state(self, batch: int) -> tuple: ...

    def predict(self, y: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
        """(B, 1) token ids -> (g (B, P), state)."""

    def predictor_state(self, batch: int) -> tuple: ...

    def joint(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """(B, D), (B, P) -> logits (B, V)."""


class TorchBackend:
    """A :class:`TransducerBackend` over a PyTorch :class:`~asr_core.models.rnnt.Transducer` (eval mode)."""

    def __init__(self, model) -> None:
        self.model = model.eval()
        self.blank, self.streaming = model.blank, model.encoder.streaming
        if self.streaming:
            cfg = model.encoder.cfg
            self.stack = cfg.stack
            self.time_reduction = cfg.time_reduction if cfg.time_reduction_layer >= 0 else 1
        self.device = next(model.parameters()).device  # inputs go there; frames and logits come back on the CPU

    @torch.no_grad()
    def encode_utterances(self, feats, feat_lens):
        f, f_lens = self.model.encoder(feats.to(self.device), feat_lens.to(self.device))
        return f.float().cpu(), f_lens.cpu()

    @torch.no_grad()
    def encode(self, s, s_lens, state):
        enc = self.model.encoder
        f, f_lens, state = enc.encode(enc.frontend.norm(s.to(self.device)), s_lens.to(self.device), state)
        return f.float().cpu(), f_lens.cpu(), state

    def encoder_state(self, batch: int) -> tuple:
        return self.model.encoder.zero_state(batch, self.device)

    @torch.no_grad()
    def predict(self, y, state):
        g, state = self.model.predictor.step(y.to(self.device), state)
        return g[:, -1].float().cpu(), state

    def predictor_state(self, batch: int) -> tuple:
        return self.model.predictor.zero_state(batch, self.device)

    @torch.no_grad()
    def joint(self, f, g):
        return self.model.joint(f.to(self.device), g.to(self.device)).float().cpu()


def greedy_decoder(backend: TransducerBackend, max_symbols: int = 5) -> GreedyDecoder:
    return GreedyDecoder(backend.predict, backend.joint, backend.predictor_state, backend.blank, max_symbols)


@torch.no_grad()
def offline_greedy(
    backend: TransducerBackend, feats: torch.Tensor, feat_lens: torch.Tensor, max_symbols: int = 5
) -> list[list[int]]:
    """Whole utterances (B, N, F) through ``backend`` at once: token ids per utterance."""
    f, f_lens = backend.encode_utterances(feats, feat_lens)
    dec = greedy_decoder(backend, max_symbols)
    return dec.advance(dec.init(feats.size(0)), f, f_lens).hyps


@dataclass
class Partial:
    text: str
    final: bool
    audio_seconds: float  # audio received when this hypothesis was made


class StreamingTranscriber:
    """``accept(samples) -> [Partial]`` (a hypothesis each time it changes), ``finish() -> Partial``.

    ``chunk_frames``: stacked frames per encoder call, a multiple of the time reduction.
    ``on_encode(frames)``: an optional hook called after each encoder call (benchmarks time it).
    """

    def __init__(
        self,
        backend: TransducerBackend,
        features,
        vocab,
        chunk_frames: int = DEFAULT_CHUNK_FRAMES,
        max_symbols: int = 5,
    ) -> None:
        if not backend.streaming:
            raise ValueError(
                "this transducer's encoder sees whole utterances (it has no streaming state): decode it "
                "offline (transcribe without --stream; evaluation and export do so)"
            )
        if chunk_frames < 1 or chunk_frames % backend.time_reduction:
            raise ValueError(
                f"chunk_frames must be a positive multiple of the encoder's time reduction "
                f"({backend.time_reduction}), got {chunk_frames}"
            )
        self.backend, self.vocab, self.chunk_frames = backend, vocab, chunk_frames
        self.fbank = StreamingFilterbank(features)
        self.sample_rate = features.cfg.sample_rate
        self.decoder = greedy_decoder(backend, max_symbols)
        self.reset()

    @property
    def chunk_samples(self) -> int:
        """Audio per encoder call: ``chunk_frames * stack`` hops (edgedict's chunk advance)."""
        return self.chunk_frames * self.backend.stack * self.fbank.hop

    def reset(self) -> None:
        self.fbank.reset()
        self.frames = torch.zeros(self.fbank.m.cfg.n_mels, 0)
        self.enc_state = self.backend.encoder_state(1)
        self.state = self.decoder.init(1)
        self.text = ""
        self.received = 0

    def feed(self, samples) -> None:
        """Buffer the feature frames of ``samples`` without encoding them (:func:`encode_streams` does)."""
        samples = torch.as_tensor(samples, dtype=torch.float32).reshape(-1)
        self.received += samples.numel()
        self.frames = torch.cat((self.frames, self.fbank.accept(samples)), dim=1)

    def end(self) -> None:
        """The stream has ended: buffer its last feature frames (encoding them is then ``final``)."""
        self.frames = torch.cat((self.frames, self.fbank.finish()), dim=1)

    def take_chunk(self, final: bool) -> torch.Tensor | None:
        """The next chunk of feature frames (N, n) to encode, taken from the buffer: a whole chunk, or
        at the end of the stream (``final``) whatever is left; None when there is none."""
        step = self.chunk_frames * self.backend.stack
        if self.frames.size(1) < step and not (final and self.frames.size(1) > 0):
            return None
        n = min(step, self.frames.size(1))
        chunk, self.frames = self.frames[:, :n], self.frames[:, n:]
        return chunk

    def _changed(self) -> Partial | None:
        """The hypothesis after the chunks encoded so far, if it changed."""
        text = self.vocab.decode(self.state.hyps[0])
        if text == self.text:
            return None
        self.text = text
        return Partial(text, False, self.received / self.sample_rate)

    def accept(self, samples) -> list[Partial]:
        self.feed(samples)
        return encode_streams([self], [False])[0]

    def finish(self) -> Partial:
        """Flush the stream; the final hypothesis. The transcriber is then ready for a new stream."""
        self.end()
        encode_streams([self], [True])
        return self.close()

    def close(self) -> Partial:
        """The final hypothesis of a stream whose frames have all been encoded; ready for a new stream."""
        final = Partial(self.vocab.decode(self.state.hyps[0]), True, self.received / self.sample_rate)
        self.tokens = list(self.state.hyps[0])
        self.token_frames = list(self.state.frames[0])  # encoder frame of each token (word timings)
        self.reset()
        return final


@torch.no_grad()
def encode_streams(transcribers: list[StreamingTranscriber], final: list[bool]) -> list[list[Partial]]:
    """Encode every chunk the ``transcribers`` (one per stream, one backend) have buffered, batched
    across streams: each round takes one chunk from every stream that has one and runs the encoder
    once on them, each stream's state on its own batch row; each stream's search then advances on
    its rows. ``final[i]``: stream i has ended (its last, shorter chunk goes too). Per stream, the
    partial hypotheses that changed.

    At batch 1 an LSTM encoder reads all its weights for every frame; a batch of streams shares that
    read, so a server with many streams runs them at a fraction of the cost each. The searches advance
    together too (one joint and one prediction call per step for all the round's streams). The
    results are each stream's own ``accept``/``finish``, to the float rounding of the batched products.
    """
    if len({(t.backend, t.decoder.max_symbols) for t in transcribers}) > 1:
        raise ValueError("streams encoded together must share one backend and one max_symbols")
    out: list[list[Partial]] = [[] for _ in transcribers]
    while True:
        ready = [(i, c) for i, t in enumerate(transcribers) if (c := t.take_chunk(final[i])) is not None]
        if not ready:
            return out
        lanes = [transcribers[i] for i, _ in ready]
        backend = lanes[0].backend
        n = torch.tensor([c.size(1) for _, c in ready])
        frames = torch.zeros(len(ready), ready[0][1].size(0), int(n.max()))
        for row, (_, c) in enumerate(ready):
            frames[row, :, : c.size(1)] = c
        s, s_lens = stack_frames(frames, n, backend.stack)
        state = tuple(torch.cat([t.enc_state[k] for t in lanes], dim=1) for k in range(len(lanes[0].enc_state)))
        f, f_lens, state = backend.encode(s, s_lens, state)
        lanes[0].decoder.advance_rows([t.state for t in lanes], f, f_lens)
        for row, (i, _) in enumerate(ready):
            transcribers[i].enc_state = tuple(x[:, row : row + 1] for x in state)
            if (p := transcribers[i]._changed()) is not None:
                out[i].append(p)


def stream_file(transcriber: StreamingTranscriber, wave: torch.Tensor, chunk_samples: int | None = None):
    """Feed ``wave`` in chunks (default: the transcriber's own) as if live; yields each Partial."""
    n = chunk_samples or transcriber.chunk_samples
    for i in range(0, wave.numel(), n):
        yield from transcriber.accept(wave[i : i + n])
    yield transcriber.finish()
