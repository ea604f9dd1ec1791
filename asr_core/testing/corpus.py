"""Tiny synthetic corpora for tests: harmonic clips with random letter transcripts, and a
sentencepiece model trained on one (what a transducer or a CTC-on-pieces model reads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asr_core.io import write_jsonl
from asr_core.testing.audio import write_audio

# A QuartzNet "tiny" narrowed further: the recipe tests train it for a few steps.
SMALL_QUARTZNET = {
    "prologue_channels": 32,
    "block_channels": [32, 32, 32, 32, 32],
    "epilogue_channels": 32,
    "output_channels": 48,
    "dropout": 0.1,
}


def make_corpus(root: Path, splits=(("train", 12), ("dev", 4)), seed: int = 0, missing: int = 0) -> Path:
    """Harmonic test clips of 0.5-1.2 s with random 2-8 letter transcripts in ``<split>.jsonl``;
    ``missing`` rows whose audio file does not exist are appended to the train split."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghij"))
    for split, n in splits:
        rows = []
        for i in range(n):
            dur = float(np.round(rng.uniform(0.5, 1.2), 2))
            rel = f"audio/{split}/{split}{i:03d}.flac"
            write_audio(root / rel, dur, seed=seed * 1000 + len(rows) + (0 if split == "train" else 500))
            text = (
                "".join(rng.choice(letters, int(rng.integers(2, 5))))
                + " "
                + "".join(rng.choice(letters, int(rng.integers(1, 4))))
            )
            rows.append({"audio_filepath": rel, "duration": dur, "text": text, "utt_id": f"{split}{i:03d}"})
        if split == "train":
            rows += [
                {"audio_filepath": f"audio/train/gone{j}.flac", "duration": 0.8, "text": "gone", "utt_id": f"gone{j}"}
                for j in range(missing)
            ]
        write_jsonl(root / f"{split}.jsonl", rows)
    return root


def make_sentencepiece(corpus: Path, out_dir: Path, vocab_size: int = 16) -> Path:
    """A sentencepiece model (blank = piece 0, as the tokenizer stage writes it) on ``corpus``'s train text."""
    from asr_core.io.jsonl import read_jsonl
    from asr_core.tokenizer import SentencePieceConfig, train_sentencepiece

    texts = [r["text"] for r in read_jsonl(Path(corpus) / "train.jsonl")]
    return train_sentencepiece(texts, Path(out_dir), SentencePieceConfig(vocab_size=vocab_size))
