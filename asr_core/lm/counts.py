"""N-gram counts of sentences padded as ``<s> w1 ... wk </s>``.

N: the model order; an n-gram is a tuple of n words (1 <= n <= N).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
RESERVED = frozenset({BOS, EOS, UNK})


@dataclass
class NgramCounts:
    """Raw counts per order: ``counts[n - 1][ngram] = c`` for n = 1..N."""

    order: int
    counts: list[Counter]
    sentences: int
    tokens: int  # words + one </s> per sentence

    @property
    def vocab(self) -> list[str]:
        """Words seen (``<s>`` and ``</s>`` excluded), sorted."""
        return sorted(w for (w,) in self.counts[0] if w not in (BOS, EOS))


def count_ngrams(sentences: Iterable[str], order: int) -> NgramCounts:
    """Count every n-gram of order 1..``order`` of whitespace-split ``sentences``.

    Empty sentences are skipped. A sentence may not contain the reserved tokens
    ``<s>``, ``</s>`` or ``<unk>`` (they would silently change the model).
    """
    if not isinstance(order, int) or order < 1:
        raise ValueError(f"n-gram order must be an int >= 1, got {order!r}")
    counts = [Counter() for _ in range(order)]
    n_sent = n_tok = 0
    for i, line in enumerate(sentences):
        words = line.split()
        if not words:
            continue
        bad = RESERVED.intersection(words)
        if bad:
            raise ValueError(f"sentence {i + 1} ({line[:80]!r}) holds reserved token(s) {sorted(bad)}")
        seq = (BOS, *words, EOS)
        n_sent += 1
        n_tok += len(words) + 1
        for n in range(1, order + 1):
            c = counts[n - 1]
            for j in range(len(seq) - n + 1):
                c[seq[j : j + n]] += 1
    if n_sent == 0:
        raise ValueError("no non-empty sentence to count n-grams from")
    return NgramCounts(order, counts, n_sent, n_tok)
