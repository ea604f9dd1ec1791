"""The lexicon the flashlight CTC decoder reads: one word per line, then its spelling.

    hello<TAB>h e l l o

The spelling is the word's characters in the model's :class:`CharVocab`. The space
``" "`` of the vocabulary is the word separator: the decoder's token list names it
:data:`SEPARATOR` (``|``), because a lexicon line is split on whitespace, and lets it
occur between words. Spellings carry no trailing ``|`` (unlike wav2vec 2.0 lexicons):
these models emit no space after the last word, and with a trailing separator the
decoder could not finish the last word (measured: 12.5% instead of 11.4% WER on the
synthetic test_unseen_voice split, mostly final-word deletions). Lexicons that have
one still load. A word is spelled from its normalised form (``HELLO`` in the official
LibriSpeech LMs is spelled ``h e l l o``) while the LM keeps its own spelling.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from asr_core.io.atomic import atomic_path
from asr_core.lm.counts import RESERVED
from asr_core.text import CharVocab
from asr_core.text.normalize import normalize_text

SEPARATOR = "|"


def build_lexicon(words: Iterable[str], vocab: CharVocab) -> tuple[dict[str, list[str]], list[str]]:
    """``(word -> spelling tokens, words that cannot be spelled)``; reserved tokens are skipped.

    A word whose normalised form is empty, holds a space or a character outside
    ``vocab`` cannot be spelled: the decoder could never output it.
    """
    lexicon: dict[str, list[str]] = {}
    rejected: list[str] = []
    for w in words:
        if w in RESERVED or w in lexicon:
            continue
        norm = normalize_text(w)
        if not norm or " " in norm or any(c not in vocab.symbols for c in norm):
            rejected.append(w)
            continue
        lexicon[w] = list(norm)
    return lexicon, rejected


def write_lexicon(lexicon: dict[str, list[str]], path: str | os.PathLike) -> Path:
    """One ``word<TAB>spelling`` line per word, sorted, written atomically."""
    if not lexicon:
        raise ValueError(f"refusing to write an empty lexicon to {path}")
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(f"{w}\t{' '.join(lexicon[w])}\n" for w in sorted(lexicon))
    return Path(path)


def read_lexicon(path: str | os.PathLike) -> dict[str, list[str]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"lexicon not found: {path}")
    out: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise ValueError(f"{path}:{lineno}: expected '<word> <token> <token> ...', got {line.strip()!r}")
            out.setdefault(parts[0], parts[1:])
    if not out:
        raise ValueError(f"{path}: empty lexicon")
    return out
