"""CTC beam search with the lm stage's LM: evaluation settings, dev-only tuning, decoding, CLI options.

``evaluate.lm`` (null: greedy only)::

    lm:
      dir: data/lm            # lm.arpa or lm.bin, and lexicon.txt (the lm stage's output)
      beam_size: 32
      beam_threshold: 25.0
      tune_split: dev         # the weights are chosen on this split; a test split is refused
      tune_utterances: 200    # its first N utterances (null: all)
      lm_weights: [0.5, 1.0, 1.5, 2.0]
      word_scores: [-2.0, -1.0, 0.0, 1.0]

The grid's best (lm_weight, word_score) by corpus WER on the tuning utterances then
decodes every evaluated split, beside greedy decoding of the same log-probs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

from asr_core.config import reject_unknown


@dataclass(frozen=True)
class BeamEvalSettings:
    dir: str = "data/lm"
    beam_size: int = 32
    beam_threshold: float = 25.0
    tune_split: str = "dev"
    tune_utterances: int | None = 200
    lm_weights: list[float] = field(default_factory=lambda: [0.5, 1.0, 1.5, 2.0])
    word_scores: list[float] = field(default_factory=lambda: [-2.0, -1.0, 0.0, 1.0])

    def __post_init__(self) -> None:
        if not self.tune_split or self.tune_split.startswith("test"):
            raise ValueError(
                f"evaluate.lm.tune_split: tuning on {self.tune_split!r} is refused: "
                f"tune on a dev split, never on a test split"
            )
        if self.tune_utterances is not None and (not isinstance(self.tune_utterances, int) or self.tune_utterances < 1):
            raise ValueError(f"evaluate.lm.tune_utterances must be null or an int >= 1, got {self.tune_utterances!r}")
        for name in ("lm_weights", "word_scores"):
            v = getattr(self, name)
            if isinstance(v, (int, float)):
                object.__setattr__(self, name, [float(v)])
            elif not isinstance(v, (list, tuple)) or not v or not all(isinstance(x, (int, float)) for x in v):
                raise ValueError(f"evaluate.lm.{name} must be a number or a non-empty list of numbers, got {v!r}")

    @classmethod
    def from_dict(cls, d: dict) -> BeamEvalSettings:
        reject_unknown(cls, d, "evaluate.lm")
        return cls(**d)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class BeamEvaluation:
    """Loads the LM once; :meth:`tune` picks the weights, :meth:`decode` uses them."""

    def __init__(self, settings: BeamEvalSettings, vocab) -> None:
        from asr_core.decoding.beam import BeamConfig, LexiconBeamDecoder
        from asr_core.lm import find_lm

        self.settings = settings
        lm_dir = Path(settings.dir)
        self.lm_path = find_lm(lm_dir)
        cfg = BeamConfig(beam_size=settings.beam_size, beam_threshold=settings.beam_threshold)
        self.decoder = LexiconBeamDecoder(vocab, lm_dir / "lexicon.txt", self.lm_path, cfg)
        self.result: dict | None = None

    def tune(self, transcripts: Sequence) -> dict:
        """Grid search on ``transcripts`` (of the tune split, with log-probs): the chosen weights and the grid."""
        from asr_core.decoding.beam import tune_weights

        n = self.settings.tune_utterances
        chosen = list(transcripts)[:n] if n else list(transcripts)
        if not chosen:
            raise ValueError(f"evaluate.lm.tune_split {self.settings.tune_split!r} has no utterances to tune on")
        t0 = time.perf_counter()
        res = tune_weights(
            self.decoder,
            [t.log_probs for t in chosen],
            [t.ref for t in chosen],
            self.settings.lm_weights,
            self.settings.word_scores,
        )
        self.decoder = self.decoder.with_weights(res["lm_weight"], res["word_score"])
        self.result = {
            "lm_file": str(self.lm_path),
            "beam_size": self.settings.beam_size,
            "tune_split": self.settings.tune_split,
            "tune_utterances": len(chosen),
            "lm_weight": res["lm_weight"],
            "word_score": res["word_score"],
            "tune_wer": res["wer"],
            "tune_seconds": round(time.perf_counter() - t0, 2),
            "grid": res["grid"],
        }
        print(
            f"evaluate: beam tuning on {len(chosen)} {self.settings.tune_split} utterances: "
            f"lm_weight {res['lm_weight']}, word_score {res['word_score']} (WER {100 * res['wer']:.2f}%)"
        )
        return self.result

    def score(self, transcripts: Sequence) -> tuple[list[list], dict]:
        """Beam-decode a split: its TSV rows (the evaluate layout) and its report entry."""
        from asr_core.decoding import corpus_errors
        from asr_core.objectives.report import score_rows

        hyps, rtf = self.decode(transcripts)
        rows = score_rows(transcripts, hyps)
        scores = corpus_errors((t.ref, h) for t, h in zip(transcripts, hyps))
        entry = {
            "wer": round(scores["wer"], 6),
            "cer": round(scores["cer"], 6),
            "decode_seconds_per_audio_second": round(rtf, 6),
        }
        print(
            f"evaluate:   beam+LM: WER {100 * scores['wer']:.2f}%  CER {100 * scores['cer']:.2f}%  "
            f"({1000 * rtf:.2f} ms of decoding per audio second)"
        )
        return rows, entry

    def decode(self, transcripts: Sequence) -> tuple[list[str], float]:
        """Beam hypotheses of ``transcripts`` and the decoding seconds per audio second."""
        if self.result is None:
            raise RuntimeError("tune the weights before decoding (BeamEvaluation.tune)")
        t0 = time.perf_counter()
        hyps = [self.decoder.decode_one(t.log_probs) for t in transcripts]
        audio = sum(t.duration for t in transcripts)
        return hyps, (time.perf_counter() - t0) / audio if audio else 0.0


NOT_CHARACTERS = (
    "the lexicon beam search spells words in characters; this model's vocabulary is sentencepiece pieces "
    "(greedy decoding only)"
)


def lm_unsupported(vocab) -> str | None:
    """Why the n-gram LM beam search cannot decode with ``vocab``, or None when it can."""
    from asr_core.text import CharVocab

    return None if isinstance(vocab, CharVocab) else NOT_CHARACTERS


def beam_evaluation(section: dict | None, vocab) -> BeamEvaluation | None:
    """The evaluate stage's beam search from ``evaluate.lm``; None (greedy only) when it is null
    (or when the model's vocabulary is not characters: the caller reports :func:`lm_unsupported`)."""
    if not section:
        return None
    if not isinstance(section, dict):
        raise ValueError(f"evaluate.lm must be a mapping or null, got {section!r}")
    settings = BeamEvalSettings.from_dict(section)
    return None if lm_unsupported(vocab) else BeamEvaluation(settings, vocab)


def add_lm_args(p) -> None:
    """``transcribe``'s beam-search options."""
    g = p.add_argument_group("beam search with an n-gram LM (greedy without --lm)")
    g.add_argument("--lm", help="the lm stage's folder (data/lm: lm.arpa or lm.bin + lexicon.txt) or an LM file")
    g.add_argument("--lexicon", help="lexicon file (default: lexicon.txt beside the LM)")
    g.add_argument("--beam-size", type=int, default=32)
    g.add_argument("--lm-weight", type=float, help="default: from --weights-from, else 1.0")
    g.add_argument("--word-score", type=float, help="default: from --weights-from, else 0.0")
    g.add_argument("--weights-from", help="an evaluate report (reports/evaluate.json): use the weights tuned on dev")


def beam_from_args(args, vocab):
    """A LexiconBeamDecoder from ``transcribe``'s options, or None without ``--lm``."""
    import json

    from asr_core.decoding.beam import BeamConfig, LexiconBeamDecoder
    from asr_core.lm import find_lm

    if not args.lm:
        return None
    if lm_unsupported(vocab):
        raise ValueError(f"--lm: {lm_unsupported(vocab)}")
    lm = Path(args.lm)
    lm_file = find_lm(lm) if lm.is_dir() else lm
    lexicon = Path(args.lexicon) if args.lexicon else lm_file.parent / "lexicon.txt"
    weights = {"lm_weight": 1.0, "word_score": 0.0}
    if args.weights_from:
        report = json.loads(Path(args.weights_from).read_text(encoding="utf-8"))
        if "beam" not in report:
            raise ValueError(f"--weights-from {args.weights_from}: no 'beam' entry (evaluate ran without evaluate.lm)")
        weights = {k: report["beam"][k] for k in weights}
    for k in weights:
        if getattr(args, k) is not None:
            weights[k] = getattr(args, k)
    return LexiconBeamDecoder(vocab, lexicon, lm_file, BeamConfig(beam_size=args.beam_size, **weights))
