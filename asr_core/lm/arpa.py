"""The ARPA back-off language model format: write, read, score.

    \\data\\
    ngram 1=<count>
    ...
    \\1-grams:
    <log10 p>\\t<w1>[\\t<log10 back-off>]
    ...
    \\end\\

Probabilities and back-off weights are base-10 logarithms. An n-gram absent from the
file is scored by backing off: ``log p(w | h) = bow(h) + log p(w | h')``. The files
written here load in KenLM (and so in flashlight's decoder) and SRILM. ``.gz`` files
are read transparently.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from asr_core.io.atomic import atomic_path
from asr_core.lm.counts import BOS, EOS, UNK

_NGRAM_LINE = re.compile(r"^ngram (\d+)=(\d+)$")
_SECTION = re.compile(r"^\\(\d+)-grams:$")


@dataclass
class ArpaModel:
    """``log_probs[n - 1][ngram]`` and ``log_bows[n - 1][ngram]`` (log10; absent bow = 0)."""

    order: int
    log_probs: list[dict[tuple[str, ...], float]]
    log_bows: list[dict[tuple[str, ...], float]]

    @property
    def vocab(self) -> set[str]:
        return {g[0] for g in self.log_probs[0]}

    def ngram_counts(self) -> list[int]:
        return [len(level) for level in self.log_probs]

    def log10_prob(self, word: str, context: Iterable[str] = ()) -> float:
        """log10 p(word | context) by back-off; unknown words are ``<unk>``."""
        uni = self.log_probs[0]
        word = word if (word,) in uni else UNK
        ctx = tuple(w if (w,) in uni else UNK for w in context)
        ctx = ctx[len(ctx) - self.order + 1 :] if self.order > 1 and len(ctx) >= self.order else ctx
        ctx = ctx if self.order > 1 else ()
        backoff = 0.0
        while True:
            g = ctx + (word,)
            p = self.log_probs[len(g) - 1].get(g)
            if p is not None:
                return backoff + p
            if not ctx:
                raise KeyError(f"{word!r} has no unigram probability (the model has no <unk>)")
            backoff += self.log_bows[len(ctx) - 1].get(ctx, 0.0)
            ctx = ctx[1:]

    def sentence_log10_prob(self, sentence: str) -> float:
        words = [BOS, *sentence.split(), EOS]
        return sum(self.log10_prob(words[i], words[:i]) for i in range(1, len(words)))

    def perplexity(self, sentences: Iterable[str]) -> dict[str, float]:
        """Per-token perplexity (``</s>`` counted as a token, OOVs scored as ``<unk>``) and the OOV rate."""
        total = 0.0
        tokens = oov = 0
        vocab = self.vocab
        for s in sentences:
            words = s.split()
            if not words:
                continue
            total += self.sentence_log10_prob(s)
            tokens += len(words) + 1
            oov += sum(w not in vocab for w in words)
        if tokens == 0:
            raise ValueError("perplexity of an empty text")
        return {"perplexity": 10 ** (-total / tokens), "tokens": tokens, "oov_rate": oov / tokens}


def _fmt(x: float) -> str:
    return f"{x:.6f}" if math.isfinite(x) else "-99.000000"


def write_arpa(model: ArpaModel, path: str | os.PathLike) -> Path:
    """Write ``model`` as an ARPA file, n-grams sorted, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write("\\data\\\n")
        f.writelines(f"ngram {n}={len(level)}\n" for n, level in enumerate(model.log_probs, 1))
        for n, level in enumerate(model.log_probs, 1):
            f.write(f"\n\\{n}-grams:\n")
            bows = model.log_bows[n - 1] if n < model.order else {}
            for g in sorted(level):
                bow = bows.get(g)
                line = f"{_fmt(level[g])}\t{' '.join(g)}"
                f.write(line + (f"\t{_fmt(bow)}\n" if bow is not None else "\n"))
        f.write("\n\\end\\\n")
    return Path(path)


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"ARPA file not found: {path}")
    with _open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            yield lineno, line.strip()


def _header(lines: Iterator[tuple[int, str]], path: Path) -> list[int]:
    for lineno, line in lines:
        if line == "\\data\\":
            break
        if line:
            raise ValueError(f"{path}:{lineno}: expected '\\data\\' before anything else, got {line[:80]!r}")
    else:
        raise ValueError(f"{path}: no '\\data\\' header: not an ARPA file")
    counts: list[int] = []
    for lineno, line in lines:
        if not line:
            if counts:
                return counts
            continue
        m = _NGRAM_LINE.match(line)
        if not m or int(m.group(1)) != len(counts) + 1:
            raise ValueError(f"{path}:{lineno}: expected 'ngram {len(counts) + 1}=<count>', got {line[:80]!r}")
        counts.append(int(m.group(2)))
    raise ValueError(f"{path}: truncated header")


def read_arpa(path: str | os.PathLike) -> ArpaModel:
    """Read a whole ARPA file into memory (fine for the corpora here; KenLM reads big ones)."""
    path = Path(path)
    lines = _lines(path)
    counts = _header(lines, path)
    order = len(counts)
    log_probs: list[dict] = [{} for _ in range(order)]
    log_bows: list[dict] = [{} for _ in range(order)]
    n = 0
    for lineno, line in lines:
        if not line:
            continue
        m = _SECTION.match(line)
        if m:
            if int(m.group(1)) != n + 1 or n + 1 > order:
                raise ValueError(f"{path}:{lineno}: unexpected section {line!r} (after section {n})")
            n += 1
            continue
        if line == "\\end\\":
            break
        if n == 0:
            raise ValueError(f"{path}:{lineno}: n-gram line before any '\\N-grams:' section")
        parts = line.split("\t") if "\t" in line else line.split()
        try:
            if "\t" in line:
                logp, words = float(parts[0]), tuple(parts[1].split())
                bow = float(parts[2]) if len(parts) > 2 else None
            else:
                logp, words = float(parts[0]), tuple(parts[1 : 1 + n])
                bow = float(parts[1 + n]) if len(parts) > 1 + n else None
        except (ValueError, IndexError):
            raise ValueError(f"{path}:{lineno}: malformed {n}-gram line {line[:80]!r}") from None
        if len(words) != n:
            raise ValueError(f"{path}:{lineno}: expected {n} words in the {n}-grams section, got {line[:80]!r}")
        log_probs[n - 1][words] = logp
        if bow is not None:
            log_bows[n - 1][words] = bow
    else:
        raise ValueError(f"{path}: truncated: no '\\end\\' line")
    got = [len(level) for level in log_probs]
    if got != counts:
        raise ValueError(f"{path}: header announces n-gram counts {counts}, the file holds {got}")
    return ArpaModel(order, log_probs, log_bows)


def read_arpa_unigrams(path: str | os.PathLike) -> list[str]:
    """The words of the 1-grams section, in file order, reading no further (for big LMs)."""
    path = Path(path)
    lines = _lines(path)
    _header(lines, path)
    words: list[str] = []
    inside = False
    for lineno, line in lines:
        if line == "\\1-grams:":
            inside = True
        elif inside and (line.startswith("\\") or (not line and words)):
            break
        elif inside and line:
            parts = line.split()
            if len(parts) < 2:
                raise ValueError(f"{path}:{lineno}: malformed 1-gram line {line[:80]!r}")
            words.append(parts[1])
    if not words:
        raise ValueError(f"{path}: no 1-grams")
    return words
