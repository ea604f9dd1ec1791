"""Interpolated modified Kneser-Ney smoothing (Chen & Goodman 1998), as KenLM's ``lmplz`` does it.

Adjusted counts ``a``: raw counts for the highest order and for n-grams starting with
``<s>``; otherwise the continuation count N1+(. g), the number of distinct words seen
before g. Per order n, three discounts from the counts of adjusted counts t_k::

    Y = t1 / (t1 + 2 t2),  D1 = 1 - 2Y t2/t1,  D2 = 2 - 3Y t3/t2,  D3+ = 3 - 4Y t4/t3

and for a context h with words w seen after it::

    p(w | h) = (a(hw) - D(a(hw))) / sum_w a(hw) + gamma(h) p(w | h')      (h' = h without its first word)
    gamma(h) = (D1 N1(h.) + D2 N2(h.) + D3+ N3+(h.)) / sum_w a(hw)

The unigram level interpolates with the uniform distribution over the vocabulary
(seen words, ``</s>`` and ``<unk>``; ``<s>`` is never predicted). In ARPA terms
``p(w | h)`` is stored for every seen n-gram and ``gamma(h)`` is the back-off weight
of ``h``, so each context's distribution sums to 1 exactly.

A tiny corpus can have a zero count of counts (no n-gram seen exactly twice, say),
where the formulas are undefined; that order then falls back to the single
Kneser-Ney discount ``Y`` (0.5 if even that is undefined) for the affected classes,
and the result says so (``fallback``).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass

from asr_core.lm.arpa import ArpaModel
from asr_core.lm.counts import BOS, EOS, UNK, NgramCounts


@dataclass(frozen=True)
class Discounts:
    d1: float
    d2: float
    d3: float
    fallback: bool = False

    def __call__(self, a: int) -> float:
        return self.d1 if a == 1 else self.d2 if a == 2 else self.d3

    def to_dict(self) -> dict:
        return {"d1": round(self.d1, 6), "d2": round(self.d2, 6), "d3+": round(self.d3, 6), "fallback": self.fallback}


def adjusted_counts(nc: NgramCounts) -> list[Counter]:
    """Per order: the counts KN discounts (see the module doc); unigram ``<s>`` left out."""
    out = []
    for n in range(1, nc.order + 1):
        raw = nc.counts[n - 1]
        if n == nc.order:
            adj = Counter(raw)
        else:
            cont = Counter(g[1:] for g in nc.counts[n])  # distinct left extensions
            adj = Counter({g: (c if g[0] == BOS else cont[g]) for g, c in raw.items()})
        adj.pop((BOS,), None)
        out.append(adj)
    return out


def discounts(adjusted: Counter) -> Discounts:
    """D1, D2, D3+ from the counts of counts t1..t4 of one order's adjusted counts."""
    t = Counter(min(a, 5) for a in adjusted.values())
    t1, t2, t3, t4 = t[1], t[2], t[3], t[4]
    y = t1 / (t1 + 2 * t2) if t1 > 0 and t2 > 0 else 0.5
    fallback = not (t1 > 0 and t2 > 0)
    ds = []
    for k, (tk, tk1) in enumerate(((t1, t2), (t2, t3), (t3, t4)), start=1):
        d = k - (k + 1) * y * tk1 / tk if tk > 0 and tk1 > 0 else -1.0
        if not 0.0 < d < k:
            d, fallback = min(y, k * 0.999), True
        ds.append(d)
    return Discounts(*ds, fallback=fallback)


def estimate_kneser_ney(nc: NgramCounts) -> tuple[ArpaModel, list[Discounts]]:
    """The interpolated modified Kneser-Ney model of ``nc`` and the discounts per order."""
    adjusted = adjusted_counts(nc)
    discs = [discounts(adj) for adj in adjusted]
    order = nc.order
    probs: list[dict[tuple[str, ...], float]] = [{} for _ in range(order)]  # natural probabilities
    bows: list[dict[tuple[str, ...], float]] = [{} for _ in range(order)]

    # unigrams: interpolate with the uniform distribution over the vocabulary
    uni, d = adjusted[0], discs[0]
    vocab = {g[0] for g in uni} | {EOS, UNK}
    total = sum(uni.values())
    gamma = sum(d(a) for a in uni.values()) / total
    for w in vocab:
        a = uni.get((w,), 0)
        probs[0][(w,)] = (max(a - d(a), 0.0) if a else 0.0) / total + gamma / len(vocab)

    for n in range(2, order + 1):
        adj, d = adjusted[n - 1], discs[n - 1]
        by_ctx: dict[tuple[str, ...], list[tuple[str, int]]] = defaultdict(list)
        for g, a in adj.items():
            by_ctx[g[:-1]].append((g[-1], a))
        lower = probs[n - 2]
        for h, seen in by_ctx.items():
            total = sum(a for _, a in seen)
            gamma = sum(d(a) for _, a in seen) / total
            for w, a in seen:
                probs[n - 1][h + (w,)] = (a - d(a)) / total + gamma * lower[h[1:] + (w,)]
            bows[n - 2][h] = gamma

    log_probs = [{g: math.log10(p) for g, p in level.items()} for level in probs]
    log_probs[0][(BOS,)] = -99.0  # never predicted; listed because it is a context (ARPA convention)
    log_bows = [{g: math.log10(b) for g, b in level.items()} for level in bows]
    return ArpaModel(order, log_probs, log_bows), discs
