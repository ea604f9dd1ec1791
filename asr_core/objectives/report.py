"""What every objective's evaluation writes: per-utterance TSV rows, split scores, split manifests."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from asr_core.decoding.metrics import corpus_errors, utterance_errors

TSV_HEADER = ["utt_id", "reference", "hypothesis", "word_errors", "words", "char_errors", "chars"]


def tsv(rows: Sequence[Sequence]) -> str:
    """``reports/eval/<split>.tsv``: one row per utterance under :data:`TSV_HEADER`."""
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    w.writerow(TSV_HEADER)
    w.writerows(rows)
    return buf.getvalue()


def score_rows(transcripts: Sequence, hyps: Sequence[str]) -> list[list]:
    """TSV rows of ``transcripts`` (``utt_id``, ``ref``) scored against ``hyps``."""
    rows = []
    for t, h in zip(transcripts, hyps):
        e = utterance_errors(t.ref, h)
        rows.append([t.utt_id, t.ref, h, e.word_errors, e.words, e.char_errors, e.chars])
    return rows


def split_score(transcripts: Sequence, hyps: Sequence[str], skipped: int) -> dict[str, Any]:
    """A split's report entry: corpus WER/CER, counts, unreadable files, audio hours."""
    s = corpus_errors((t.ref, h) for t, h in zip(transcripts, hyps))
    return {
        "wer": round(s["wer"], 6),
        "cer": round(s["cer"], 6),
        "utterances": s["utterances"],
        "words": s["words"],
        "skipped": skipped,
        "audio_hours": round(sum(t.duration for t in transcripts) / 3600, 4),
    }


def split_manifest(manifest_dir: str | Path, split: str, where: str) -> Path:
    """``<manifest_dir>/<split>.jsonl``; a missing one names the param (``where``) that asked for it."""
    manifest = Path(manifest_dir) / f"{split}.jsonl"
    if not manifest.is_file():
        raise FileNotFoundError(f"{where}: no manifest for split {split!r} at {manifest}")
    return manifest
