"""Parity of a backend runner against the PyTorch model on a manifest.

Features are computed once (the evaluation collate: no dither, no augmentation) into
duration-bucketed batches of *mixed* lengths, so length masking in the exported graphs is
exercised on padded batches (with ``keep_waves``, the padded waveforms too, for the
waveform-input runners). Each runner then decodes the same batches:

- fp32 gate: max |log_prob difference| over the valid frames <= a tolerance, equal output
  lengths, and identical greedy transcripts;
- reduced precision gate: WER within a stated absolute tolerance of PyTorch fp32's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch

from asr_core.data.loaders import eval_loader, load_manifest
from asr_core.decoding.metrics import corpus_errors
from asr_core.models import greedy_decode
from asr_core.text.vocabulary import Vocabulary


@dataclass(frozen=True)
class FeatureBatch:
    utt_ids: list[str]
    refs: list[str]
    feats: torch.Tensor  # (B, F, T)
    lens: torch.Tensor  # (B,)
    waves: torch.Tensor | None = None  # (B, S) zero padded: the features' input (keep_waves)
    wave_lens: torch.Tensor | None = None  # (B,)


@dataclass
class Decoded:
    """One runner's output over the batches, in batch order."""

    hyps: list[str] = field(default_factory=list)
    out_lens: list[int] = field(default_factory=list)
    log_probs: list[np.ndarray] = field(default_factory=list)  # per utterance, (T'_valid, V)


def manifest_batches(
    manifest_path: str | os.PathLike,
    frontend: torch.nn.Module,
    vocab: Vocabulary,
    *,
    batch_seconds: float = 120.0,
    max_utterances: int | None = None,
    num_workers: int = 0,
    keep_waves: bool = False,
) -> list[FeatureBatch]:
    """Feature batches of a manifest (unreadable files are left out, as in evaluation).

    ``keep_waves``: each batch also holds its padded waveforms (``waves``, ``wave_lens``), the input
    of the waveform-input runners (``runner.takes_waveform``).
    """
    manifest = load_manifest(manifest_path, max_utterances)
    if len(manifest) == 0:
        raise ValueError(f"{manifest_path}: no utterances to check parity on")
    texts = dict(zip(manifest.utt_ids, manifest.texts))
    loader = eval_loader(
        manifest, vocab.encode, frontend, batch_seconds=batch_seconds, num_workers=num_workers, keep_waves=keep_waves
    )
    out = []
    for b in loader:
        if b["feats"].size(0):
            out.append(
                FeatureBatch(
                    list(b["utt_ids"]),
                    [texts[u] for u in b["utt_ids"]],
                    b["feats"],
                    b["feat_lens"],
                    b.get("waves"),
                    b.get("wave_lens"),
                )
            )
    return out


def runner_inputs(runner, batch: FeatureBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(feats, lens)``, or ``(waves, wave_lens)`` for a runner that ``takes_waveform``."""
    if not getattr(runner, "takes_waveform", False):
        return batch.feats, batch.lens
    if batch.waves is None:
        raise ValueError(
            f"{getattr(runner, 'name', runner)} takes waveforms: build the batches with "
            "manifest_batches(..., keep_waves=True)"
        )
    return batch.waves, batch.wave_lens


def decode_batches(runner, batches: list[FeatureBatch], vocab: Vocabulary, *, keep_log_probs: bool = False) -> Decoded:
    """Greedy transcripts (and, if asked, the valid log-prob frames) of every batch."""
    d = Decoded()
    for b in batches:
        log_probs, out_lens = runner(*runner_inputs(runner, b))
        log_probs, out_lens = log_probs.float().cpu(), out_lens.cpu()
        d.hyps += [vocab.decode(ids) for ids in greedy_decode(log_probs, out_lens, vocab.blank)]
        d.out_lens += out_lens.tolist()
        if keep_log_probs:
            d.log_probs += [log_probs[i, :n].numpy() for i, n in enumerate(out_lens.tolist())]
    return d


def references(batches: list[FeatureBatch]) -> list[str]:
    return [r for b in batches for r in b.refs]


def compare(ref: Decoded, got: Decoded, refs: list[str]) -> dict:
    """Numbers of the gate: max abs log-prob difference, length mismatches, differing transcripts, WER."""
    assert len(ref.hyps) == len(got.hyps) == len(refs), (len(ref.hyps), len(got.hyps), len(refs))
    diff = 0.0
    for a, b in zip(ref.log_probs, got.log_probs):
        n = min(len(a), len(b))  # frames both have; a length mismatch fails the gate on its own
        if n:
            diff = max(diff, float(np.abs(a[:n] - b[:n]).max()))
    lens_mismatch = sum(a != b for a, b in zip(ref.out_lens, got.out_lens))
    wer_ref = corpus_errors(zip(refs, ref.hyps))["wer"]
    wer = corpus_errors(zip(refs, got.hyps))["wer"]
    return {
        "max_abs_diff": diff,
        "length_mismatches": int(lens_mismatch),
        "transcripts_differ": int(sum(a != b for a, b in zip(ref.hyps, got.hyps))),
        "utterances": len(refs),
        "wer": round(wer, 6),
        "wer_torch": round(wer_ref, 6),
        "wer_change": round(wer - wer_ref, 6),
    }


def fp32_gate(result: dict, max_abs_diff: float) -> dict:
    """fp32: logits within ``max_abs_diff`` and identical transcripts."""
    ok = (
        result["max_abs_diff"] <= max_abs_diff
        and result["transcripts_differ"] == 0
        and result["length_mismatches"] == 0
    )
    return {**result, "gate": "fp32", "max_abs_diff_tolerance": max_abs_diff, "passed": bool(ok)}


def reduced_gate(result: dict, wer_tolerance: float) -> dict:
    """Reduced precision: WER within ``wer_tolerance`` (absolute) of PyTorch fp32's."""
    ok = abs(result["wer_change"]) <= wer_tolerance and result["length_mismatches"] == 0
    return {**result, "gate": "wer", "wer_tolerance": wer_tolerance, "passed": bool(ok)}
