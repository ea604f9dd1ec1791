"""Transducer transcription of a manifest: greedy and (optionally) beam search, in manifest order.

Features come from the model's front end in the loader workers (the streaming-exact
filterbank, eval mode); batches are bucketed by duration.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from asr_core.data.loaders import eval_loader, load_manifest
from asr_core.decoding.rnnt_beam import beam_search
from asr_core.decoding.rnnt_stream import (
    TorchBackend,
    TransducerBackend,
    greedy_decoder,
)


@dataclass(frozen=True)
class RNNTTranscript:
    utt_id: str
    ref: str
    hyp: str  # greedy
    duration: float
    beam_hyp: str | None = None  # with a beam width


def manifest_loader(
    manifest_path: str | os.PathLike,
    frontend,
    vocab,
    *,
    batch_seconds: float = 120.0,
    num_workers: int = 0,
    max_utterances: int | None = None,
):
    """(loader of eval batches with ``frontend``'s features, the manifest); the loader is None
    for an empty manifest."""
    manifest = load_manifest(manifest_path, max_utterances)
    if len(manifest) == 0:
        return None, manifest
    return eval_loader(manifest, vocab.encode, frontend, batch_seconds=batch_seconds, num_workers=num_workers), manifest


@torch.no_grad()
def transcribe_manifest_rnnt(
    model_or_backend,
    features,
    vocab,
    manifest_path: str | os.PathLike,
    *,
    max_symbols: int = 5,
    beam: int | None = None,
    batch_seconds: float = 120.0,
    num_workers: int = 0,
    max_utterances: int | None = None,
) -> tuple[list[RNNTTranscript], list[tuple[str, str]]]:
    """Greedy (and, with ``beam``, beam search) transcripts of a manifest, and the unreadable files.

    ``features``: the model's front-end module (the streaming filterbank).
    """
    backend: TransducerBackend = (
        TorchBackend(model_or_backend) if isinstance(model_or_backend, nn.Module) else model_or_backend
    )
    loader, manifest = manifest_loader(
        manifest_path,
        features,
        vocab,
        batch_seconds=batch_seconds,
        num_workers=num_workers,
        max_utterances=max_utterances,
    )
    if loader is None:
        return [], []
    dec = greedy_decoder(backend, max_symbols)
    found: dict[str, tuple[str, str | None]] = {}
    skipped: list[tuple[str, str]] = []
    for b in loader:
        skipped += [(u, str(r)) for u, r in b["skipped"]]
        if not b["feats"].size(0):
            continue
        f, f_lens = backend.encode_utterances(b["feats"], b["feat_lens"])
        greedy = dec.advance(dec.init(f.size(0)), f, f_lens).hyps
        for i, u in enumerate(b["utt_ids"]):
            bh = vocab.decode(beam_search(backend, f[i, : int(f_lens[i])], beam, max_symbols)) if beam else None
            found[u] = (vocab.decode(greedy[i]), bh)
    out = [
        RNNTTranscript(u, manifest.texts[i], found[u][0], float(manifest.durations[i]), found[u][1])
        for i, u in enumerate(manifest.utt_ids)
        if u in found
    ]
    return out, skipped
