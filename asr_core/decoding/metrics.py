"""Word and character error rates (jiwer), per utterance and per corpus.

Corpus WER = sum of word edit operations / sum of reference words (not a mean of
per-utterance rates), the usual definition; CER the same over characters, spaces
included. Utterances with an empty reference are scored with 0 reference words
(their insertions still count in the numerator).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import jiwer


@dataclass(frozen=True)
class UttErrors:
    word_errors: int  # substitutions + deletions + insertions
    words: int  # reference words
    char_errors: int
    chars: int
    substitutions: int
    deletions: int
    insertions: int

    def to_dict(self) -> dict:
        return asdict(self)


def _edits(ref: list[str], hyp: list[str]) -> tuple[int, int, int]:
    """(substitutions, deletions, insertions) of a Levenshtein alignment of two token lists."""
    if not ref:
        return 0, 0, len(hyp)
    if not hyp:
        return 0, len(ref), 0
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    return out.substitutions, out.deletions, out.insertions


def utterance_errors(ref: str, hyp: str) -> UttErrors:
    r_words, h_words = ref.split(), hyp.split()
    s, d, i = _edits(r_words, h_words)
    if ref and hyp:
        c = jiwer.process_characters(ref, hyp)
        char_errors = c.substitutions + c.deletions + c.insertions
    else:
        char_errors = max(len(ref), len(hyp))
    return UttErrors(s + d + i, len(r_words), char_errors, len(ref), s, d, i)


def corpus_errors(pairs: Iterable[tuple[str, str]]) -> dict[str, float]:
    """``{"wer", "cer", "words", "chars", "utterances", "substitutions", "deletions", "insertions"}``."""
    tot = {
        "word_errors": 0,
        "words": 0,
        "char_errors": 0,
        "chars": 0,
        "substitutions": 0,
        "deletions": 0,
        "insertions": 0,
        "utterances": 0,
    }
    for ref, hyp in pairs:
        e = utterance_errors(ref, hyp)
        for k, v in e.to_dict().items():
            tot[k] += v
        tot["utterances"] += 1
    wer = tot["word_errors"] / tot["words"] if tot["words"] else float("nan")
    cer = tot["char_errors"] / tot["chars"] if tot["chars"] else float("nan")
    return {"wer": wer, "cer": cer, **tot}
