"""Greedy CTC transcription of a manifest or of audio files with a trained ``model.pt``.

Features are computed in DataLoader workers by the model's front end (the same collate as
training, eval mode: no dither, no augmentation); batches are bucketed by duration so padding
stays small. Outputs come back in manifest order.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from asr_core.data.audio import read_wave
from asr_core.data.loaders import eval_loader, load_manifest
from asr_core.models import greedy_decode
from asr_core.text.vocabulary import Vocabulary


@dataclass(frozen=True)
class Transcript:
    utt_id: str
    ref: str
    hyp: str  # greedy
    duration: float
    log_probs: torch.Tensor | None = None  # (T, V) float32 on CPU, with keep_log_probs (beam search, tuning)


@torch.no_grad()
def _forward(
    model: nn.Module, feats: torch.Tensor, feat_lens: torch.Tensor, vocab: Vocabulary, device: torch.device, beam=None
) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """(transcripts, log_probs (B, T, V), lengths (B,)): greedy, or ``beam`` (a LexiconBeamDecoder)."""
    log_probs, out_lens = model(feats.to(device), feat_lens.to(device))
    log_probs, out_lens = log_probs.float().cpu(), out_lens.cpu()
    if beam is not None:
        return beam.decode(log_probs, out_lens), log_probs, out_lens
    return [vocab.decode(ids) for ids in greedy_decode(log_probs, out_lens, vocab.blank)], log_probs, out_lens


def _decode(
    model: nn.Module, feats: torch.Tensor, feat_lens: torch.Tensor, vocab: Vocabulary, device: torch.device, beam=None
) -> list[str]:
    return _forward(model, feats, feat_lens, vocab, device, beam)[0]


def transcribe_manifest(
    model: nn.Module,
    frontend: nn.Module,
    vocab: Vocabulary,
    manifest_path: str | os.PathLike,
    *,
    batch_seconds: float = 300.0,
    num_workers: int = 1,
    max_utterances: int | None = None,
    device: str | torch.device = "cpu",
    keep_log_probs: bool = False,
) -> tuple[list[Transcript], list[tuple[str, str]]]:
    """Transcribe every utterance of a manifest: ``(transcripts in manifest order, skipped)``.

    ``keep_log_probs`` keeps each utterance's (T, V) log-probs in its transcript, for
    beam search and LM weight tuning without a second network pass.

    ``skipped`` lists ``(utt_id, reason)`` for files that could not be read; they are
    left out of the transcripts (and so of the WER), and the caller reports them.
    """
    device = torch.device(device)
    manifest = load_manifest(manifest_path, max_utterances)
    if len(manifest) == 0:
        return [], []
    loader = eval_loader(manifest, vocab.encode, frontend, batch_seconds=batch_seconds, num_workers=num_workers)
    model.eval()
    index = {u: i for i, u in enumerate(manifest.utt_ids)}
    hyps: dict[str, str] = {}
    emissions: dict[str, torch.Tensor] = {}
    skipped: list[tuple[str, str]] = []
    for batch in loader:
        skipped += [(u, str(r)) for u, r in batch["skipped"]]
        if batch["feats"].size(0):
            texts, log_probs, lens = _forward(model, batch["feats"], batch["feat_lens"], vocab, device)
            hyps.update(zip(batch["utt_ids"], texts))
            if keep_log_probs:
                emissions.update((u, log_probs[b, : int(lens[b])].clone()) for b, u in enumerate(batch["utt_ids"]))
    out = [
        Transcript(u, manifest.texts[index[u]], hyps[u], float(manifest.durations[index[u]]), emissions.get(u))
        for u in manifest.utt_ids
        if u in hyps
    ]
    return out, skipped


def transcribe_files(
    model: nn.Module,
    frontend: nn.Module,
    vocab: Vocabulary,
    paths: Iterable[str | os.PathLike],
    device: str | torch.device = "cpu",
    beam=None,
) -> list[str]:
    """Transcribe audio files of any format/rate/channel count soundfile reads, one at a time.

    ``beam``: a :class:`~asr_core.decoding.beam.LexiconBeamDecoder` (beam search with an
    LM); greedy decoding without one. ``frontend``: the model's front-end module.
    """
    device = torch.device(device)
    frontend = frontend.eval()
    out = []
    for p in paths:
        wave = read_wave(p, frontend.cfg.sample_rate)[None]
        feats, feat_lens = frontend(wave, torch.tensor([wave.size(1)]))
        out.append(_decode(model, feats, feat_lens, vocab, device, beam)[0])
    return out
