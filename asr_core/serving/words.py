"""Word timings from the frames at which a decoder emitted each token.

A transducer emits each token at one encoder frame; a CTC alignment holds each token for a run of
frames. Either way a token has a first frame and an end frame (exclusive), and a word spans from its
first token's first frame to its last token's end frame. Which tokens make up which word is read off
the vocabulary's own decoding (characters with a space token, or sentencepiece pieces that start a
word with "▁"), so the words are exactly ``vocab.decode(tokens).split()``.
"""

from __future__ import annotations

from collections.abc import Sequence


def _groups_by_window(vocab, tokens: Sequence[int]) -> list[list[int]]:
    """Token indices per word, decoding only the current word's tokens at each step (linear time)."""
    groups: list[list[int]] = []
    start, current, seen = 0, [], []
    for i in range(len(tokens)):
        parts = vocab.decode(tokens[start : i + 1]).split()
        if seen and len(parts) > len(seen):  # token i began a new word
            groups.append(current)
            start, current, seen = i, [i], vocab.decode(tokens[i : i + 1]).split()
        elif parts != seen:  # token i added text to the current word
            current.append(i)
            seen = parts
        # else: the token added no visible text (a space, a lone word-start piece)
    if current:
        groups.append(current)
    return groups


def _groups_by_prefix(vocab, tokens: Sequence[int]) -> list[list[int]]:
    """Token indices per word from the decoding of every prefix (quadratic, exact by construction)."""
    groups: list[list[int]] = []
    seen: list[str] = []
    for i in range(len(tokens)):
        parts = vocab.decode(tokens[: i + 1]).split()
        if parts and parts != seen:
            while len(groups) < len(parts):
                groups.append([])
            groups[len(parts) - 1].append(i)
        seen = parts
    return groups


def word_timings(
    vocab, tokens: Sequence[int], starts: Sequence[int], ends: Sequence[int], frame_seconds: float
) -> list[dict]:
    """``[{"word", "start", "end"}]`` in seconds; ``starts``/``ends``: each token's first frame and end frame."""
    tokens = [int(t) for t in tokens]
    words = vocab.decode(tokens).split()
    groups = _groups_by_window(vocab, tokens)
    if len(groups) != len(words):  # a vocabulary whose pieces join differently: decode each prefix
        groups = _groups_by_prefix(vocab, tokens)
    out, last_end = [], 0.0
    for i, word in enumerate(words):
        group = groups[i] if i < len(groups) else []
        if group:
            start, end = starts[group[0]] * frame_seconds, max(ends[j] for j in group) * frame_seconds
        else:  # no token of its own (cannot happen with the toolkit's vocabularies): zero length
            start = end = last_end
        last_end = end
        out.append({"word": word, "start": round(start, 3), "end": round(end, 3)})
    return out
