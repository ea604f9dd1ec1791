"""Transducer transcription of a manifest: greedy and (optionally) beam search, in manifest order.

Features come from the same collate as training, in eval mode (the streaming-exact
filterbank); batches are bucketed by duration.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asr_core.data.dataset import AudioDataset, Manifest
from asr_core.data.sampler import BucketingBatchSampler
from asr_core.decoding.rnnt_beam import beam_search
from asr_core.decoding.rnnt_stream import (
    TorchBackend,
    TransducerBackend,
    greedy_decoder,
)
from asr_core.models.rnnt.frontend import stack_frames


def read_wave(path: str | os.PathLike, sample_rate: int) -> torch.Tensor:
    """Any file soundfile reads -> (samples,) float32 mono at ``sample_rate``."""
    from asr_core.data.audio import load_audio, resample, to_mono

    x, sr = load_audio(Path(path))
    x = to_mono(x)
    if sr != sample_rate:
        x = resample(x, sr, sample_rate)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


@dataclass(frozen=True)
class RNNTTranscript:
    utt_id: str
    ref: str
    hyp: str  # greedy
    duration: float
    beam_hyp: str | None = None  # with a beam width


def manifest_loader(manifest_path: str | os.PathLike, features, vocab, *, batch_seconds: float = 120.0,
                    num_workers: int = 0, max_utterances: int | None = None):
    """(DataLoader of eval batches with features, the manifest); the manifest may be empty."""
    from asr_core.train.rnnt_recipe import RNNTCollate

    manifest = Manifest.load(manifest_path)
    if max_utterances is not None:
        manifest = manifest.subset(np.arange(min(max_utterances, len(manifest))))
    if len(manifest) == 0:
        return None, manifest
    dataset = AudioDataset(manifest, vocab.encode, sample_rate=features.sample_rate)
    budget = max(batch_seconds, float(manifest.durations.max()))
    sampler = BucketingBatchSampler(manifest.durations, max_batch_seconds=budget, num_buckets=10, shuffle=False)
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=RNNTCollate(features),
                                       num_workers=num_workers), manifest


@torch.no_grad()
def transcribe_manifest_rnnt(model_or_backend, features, vocab, manifest_path: str | os.PathLike, *,
                             max_symbols: int = 5, beam: int | None = None, batch_seconds: float = 120.0,
                             num_workers: int = 0, max_utterances: int | None = None
                             ) -> tuple[list[RNNTTranscript], list[tuple[str, str]]]:
    """Greedy (and, with ``beam``, beam search) transcripts of a manifest, and the unreadable files.

    ``features``: the model's :class:`~asr_core.features.FilterbankConfig`.
    """
    backend: TransducerBackend = (model_or_backend if hasattr(model_or_backend, "encoder_state")
                                  else TorchBackend(model_or_backend))
    loader, manifest = manifest_loader(manifest_path, features, vocab, batch_seconds=batch_seconds,
                                       num_workers=num_workers, max_utterances=max_utterances)
    if loader is None:
        return [], []
    dec = greedy_decoder(backend, max_symbols)
    found: dict[str, tuple[str, str | None]] = {}
    skipped: list[tuple[str, str]] = []
    for b in loader:
        skipped += [(u, str(r)) for u, r in b["skipped"]]
        if not b["feats"].size(0):
            continue
        s, s_lens = stack_frames(b["feats"], b["feat_lens"], backend.stack)
        f, f_lens, _ = backend.encode(s, s_lens, backend.encoder_state(s.size(0)))
        greedy = dec.advance(dec.init(f.size(0)), f, f_lens).hyps
        for i, u in enumerate(b["utt_ids"]):
            bh = vocab.decode(beam_search(backend, f[i, : int(f_lens[i])], beam, max_symbols)) if beam else None
            found[u] = (vocab.decode(greedy[i]), bh)
    out = [RNNTTranscript(u, manifest.texts[i], found[u][0], float(manifest.durations[i]), found[u][1])
           for i, u in enumerate(manifest.utt_ids) if u in found]
    return out, skipped
