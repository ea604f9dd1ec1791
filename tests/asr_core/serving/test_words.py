"""Word timings from token frames, for both vocabularies: words are the transcript's, spans the tokens'."""

from __future__ import annotations

import pytest

from asr_core.serving.words import _groups_by_prefix, _groups_by_window, word_timings
from asr_core.testing import make_corpus, make_sentencepiece
from asr_core.text import CharVocab


def test_word_timings_with_characters():
    vocab = CharVocab()
    tokens = vocab.encode(" ab  cde f")
    starts = list(range(0, 2 * len(tokens), 2))  # token i at frame 2i, held for 2 frames
    ends = [s + 2 for s in starts]
    words = word_timings(vocab, tokens, starts, ends, 0.02)
    assert [w["word"] for w in words] == ["ab", "cde", "f"]
    # "ab" = tokens 1-2 (frames 2-5), "cde" = tokens 5-7 (frames 10-15), "f" = token 9 (frames 18-19)
    assert [(w["start"], w["end"]) for w in words] == [(0.04, 0.12), (0.2, 0.32), (0.36, 0.4)]
    assert word_timings(vocab, [], [], [], 0.02) == []
    assert word_timings(vocab, vocab.encode("   "), [0, 1, 2], [1, 2, 3], 0.02) == []


@pytest.fixture(scope="module")
def pieces(tmp_path_factory):
    from asr_core.models.rnnt.vocab import SubwordVocab

    root = tmp_path_factory.mktemp("spm")
    return SubwordVocab.load(make_sentencepiece(make_corpus(root / "corpus"), root / "spm"))


def test_word_timings_with_sentencepiece_pieces(pieces):
    text = "abc de fgh ij"
    tokens = pieces.encode(text)
    frames = list(range(3, 3 + 3 * len(tokens), 3))
    words = word_timings(pieces, tokens, frames, [f + 1 for f in frames], 0.06)
    assert [w["word"] for w in words] == text.split() == pieces.decode(tokens).split()
    groups = _groups_by_window(pieces, tokens)
    assert groups == _groups_by_prefix(pieces, tokens)  # the linear reading agrees with the exact one
    for w, g in zip(words, groups):
        assert w["start"] == pytest.approx(frames[g[0]] * 0.06) and w["end"] == pytest.approx(
            (frames[g[-1]] + 1) * 0.06
        )
