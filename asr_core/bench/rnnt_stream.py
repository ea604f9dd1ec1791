"""Transducer benchmark: WER, time per encoder / prediction / joint call, audio seconds per second
and chunk latency, for one backend (PyTorch, onnxruntime or OpenVINO).

A streaming encoder is benchmarked streaming (below); any other (a Conformer) by
:func:`offline_benchmark`: each utterance whole, its "chunk" the whole utterance (latency = features,
encoder and greedy search of one utterance).

Each utterance is fed in chunks of the decoder's own size (``chunk_frames`` stacked frames,
300 ms at the default 10) as a live stream would arrive; a chunk's latency is the time from
handing it over to getting the hypothesis back (features, encoder, greedy search). Throughput
is audio seconds over the wall time of all ``accept``/``finish`` calls. The first
``warmup`` utterances are streamed once untimed (allocations, OpenVINO's first-shape compile).

:func:`multistream_benchmark` streams ``streams`` utterances at once, as a server holding that many
live streams would: in each round every stream hands over its next chunk and the encoder runs once
on all of them (:func:`~asr_core.decoding.rnnt_stream.encode_streams`). A chunk's latency is its
round's time; throughput is the audio of all streams over the wall time of all rounds.
"""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
import torch

from asr_core.decoding.rnnt_stream import StreamingTranscriber, encode_streams


class TimedBackend:
    """A :class:`~asr_core.decoding.rnnt_stream.TransducerBackend` that times each graph call."""

    def __init__(self, backend) -> None:
        self.inner = backend
        self.blank, self.streaming = backend.blank, backend.streaming
        if self.streaming:
            self.stack, self.time_reduction = backend.stack, backend.time_reduction
        self.seconds: dict[str, list[float]] = defaultdict(list)

    def _timed(self, name: str, fn, *args):
        t = time.perf_counter()
        out = fn(*args)
        self.seconds[name].append(time.perf_counter() - t)
        return out

    def encode(self, s, s_lens, state):
        return self._timed("encoder", self.inner.encode, s, s_lens, state)

    def encode_utterances(self, feats, feat_lens):
        return self._timed("encoder", self.inner.encode_utterances, feats, feat_lens)

    def predict(self, y, state):
        return self._timed("predictor", self.inner.predict, y, state)

    def joint(self, f, g):
        return self._timed("joint", self.inner.joint, f, g)

    def encoder_state(self, batch: int):
        return self.inner.encoder_state(batch)

    def predictor_state(self, batch: int):
        return self.inner.predictor_state(batch)


class IdVocab:
    """Token ids as text, for random-weights speed runs (no tokenizer)."""

    def decode(self, ids) -> str:
        return " ".join(str(int(i)) for i in ids)


def stream_benchmark(
    backend,
    features,
    vocab,
    utterances: list[tuple[torch.Tensor, str]],
    *,
    chunk_frames: int = 10,
    max_symbols: int = 5,
    warmup: int = 1,
) -> dict:
    """``utterances``: (16 kHz wave, reference text or "") -> the metrics (see the module doc)."""

    timed = TimedBackend(backend)
    st = StreamingTranscriber(timed, features, vocab, chunk_frames=chunk_frames, max_symbols=max_symbols)
    piece = st.chunk_samples
    for wave, _ in utterances[:warmup]:
        for i in range(0, wave.numel(), piece):
            st.accept(wave[i : i + piece])
        st.finish()
    timed.seconds.clear()
    latency, wall, audio, pairs = [], 0.0, 0.0, []
    for wave, ref in utterances:
        first = len(latency)
        for i in range(0, wave.numel(), piece):
            t = time.perf_counter()
            st.accept(wave[i : i + piece])
            latency.append(time.perf_counter() - t)
        t = time.perf_counter()
        text = st.finish().text
        latency.append(time.perf_counter() - t)
        wall += sum(latency[first:])
        audio += wave.numel() / features.cfg.sample_rate
        pairs.append((ref, text))
    return _metrics(timed, latency, wall, audio, pairs, chunk_frames, round(1000 * piece / features.cfg.sample_rate, 1))


def multistream_benchmark(
    backend,
    features,
    vocab,
    utterances: list[tuple[torch.Tensor, str]],
    *,
    streams: int,
    chunk_frames: int = 10,
    max_symbols: int = 5,
    warmup: int = 1,
) -> dict:
    """The metrics of :func:`stream_benchmark` with ``streams`` utterances streamed at once, the
    encoder batched across them (see the module doc); stream i takes utterances i, i + streams, ..."""
    if streams < 1:
        raise ValueError(f"streams must be >= 1, got {streams}")
    timed = TimedBackend(backend)
    lanes = [
        StreamingTranscriber(timed, features, vocab, chunk_frames=chunk_frames, max_symbols=max_symbols)
        for _ in range(streams)
    ]
    piece = lanes[0].chunk_samples

    def run(utts: list[tuple[torch.Tensor, str]]) -> tuple[list[float], float, list[str]]:
        queues = [list(range(i, len(utts), streams)) for i in range(streams)]
        pos, off, latency, wall, texts = [0] * streams, [0] * streams, [], 0.0, [""] * len(utts)
        while True:
            t = time.perf_counter()
            live, ended = [], []
            for i, lane in enumerate(lanes):
                if pos[i] >= len(queues[i]):
                    continue
                wave = utts[queues[i][pos[i]]][0]
                lane.feed(wave[off[i] : off[i] + piece])
                off[i] += piece
                if off[i] >= wave.numel():
                    lane.end()
                live.append(i)
                ended.append(off[i] >= wave.numel())
            if not live:
                return latency, wall, texts
            encode_streams([lanes[i] for i in live], ended)
            for i, done in zip(live, ended):
                if done:
                    texts[queues[i][pos[i]]] = lanes[i].close().text
                    pos[i], off[i] = pos[i] + 1, 0
            took = time.perf_counter() - t
            wall += took
            latency += [took] * len(live)  # each live stream's chunk waited for the whole round

    run(utterances[: warmup * streams])
    timed.seconds.clear()
    latency, wall, texts = run(utterances)
    audio = sum(w.numel() for w, _ in utterances) / features.cfg.sample_rate
    out = _metrics(
        timed,
        latency,
        wall,
        audio,
        [(r, h) for (_, r), h in zip(utterances, texts)],
        chunk_frames,
        round(1000 * piece / features.cfg.sample_rate, 1),
    )
    return {**out, "streams": streams}


@torch.no_grad()
def offline_benchmark(
    backend, features, vocab, utterances: list[tuple[torch.Tensor, str]], *, max_symbols: int = 5, warmup: int = 1
) -> dict:
    """The same metrics for a whole-utterance encoder: one "chunk" per utterance."""
    from asr_core.decoding.rnnt_stream import offline_greedy

    timed = TimedBackend(backend)

    def run(wave: torch.Tensor) -> str:
        feats, lens = features(wave[None], torch.tensor([wave.numel()]))
        return vocab.decode(offline_greedy(timed, feats, lens, max_symbols)[0])

    for wave, _ in utterances[:warmup]:
        run(wave)
    timed.seconds.clear()
    latency, audio, pairs = [], 0.0, []
    for wave, ref in utterances:
        t = time.perf_counter()
        text = run(wave)
        latency.append(time.perf_counter() - t)
        audio += wave.numel() / features.cfg.sample_rate
        pairs.append((ref, text))
    return _metrics(timed, latency, sum(latency), audio, pairs, None, None)


def _metrics(timed, latency, wall, audio, pairs, chunk_frames, chunk_ms) -> dict:
    from asr_core.decoding import corpus_errors

    lat = np.array(latency) * 1000
    out = {
        "utterances": len(pairs),
        "audio_seconds": round(audio, 3),
        "chunk_frames": chunk_frames,
        "chunk_ms": chunk_ms,
        "audio_s_per_s": round(audio / max(wall, 1e-9), 3),
        "rtfx": round(audio / max(wall, 1e-9), 3),
        "chunk_p50_ms": round(float(np.percentile(lat, 50)), 3) if lat.size else None,
        "chunk_p99_ms": round(float(np.percentile(lat, 99)), 3) if lat.size else None,
        "chunk_mean_ms": round(float(lat.mean()), 3) if lat.size else None,
    }
    for name in ("encoder", "predictor", "joint"):
        s = timed.seconds.get(name, [])
        out[f"{name}_ms"] = round(1000 * float(np.mean(s)), 4) if s else None
        out[f"{name}_calls"] = len(s)
    if any(r for r, _ in pairs):
        e = corpus_errors(pairs)
        out.update(wer=round(e["wer"], 6), cer=round(e["cer"], 6))
    return out
