"""CTC beam search with a word n-gram LM and a lexicon: flashlight-text's ``LexiconDecoder``.

Works on the log-probabilities of any CTC model of this toolkit (QuartzNet, Jasper,
wav2vec 2.0 heads): (T, V) with V = the character vocabulary + the blank (last).
Each hypothesis is scored ``ln p_ctc + lm_weight * log10 p_lm + word_score * words``; the
lexicon restricts words to those the LM knows.

flashlight-text is the library behind torchaudio's ``ctc_decoder`` (which works with
torch/torchaudio 2.11). It is used directly so that the LM and the lexicon trie are
loaded once and shared by every (lm_weight, word_score) pair of a tuning grid; the
torchaudio wrapper builds a decoder per pair, loading the LM (given a path) and
rebuilding the trie each time.

    B: batch, T: frames, V: vocabulary size incl. blank.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from asr_core.config import reject_unknown
from asr_core.lm.lexicon import SEPARATOR, read_lexicon
from asr_core.text import CharVocab

BLANK_NAME = "<blank>"


@dataclass(frozen=True)
class BeamConfig:
    beam_size: int = 32  # hypotheses kept per frame
    beam_size_token: int | None = None  # tokens tried per frame; None: all
    beam_threshold: float = 25.0  # drop hypotheses this far (nats) below the best
    lm_weight: float = 1.0  # on the log10 LM probability (KenLM's scale)
    word_score: float = 0.0  # added per word (insertion score)
    log_add: bool = False  # merge equal hypotheses by log-add instead of max

    def __post_init__(self) -> None:
        if not isinstance(self.beam_size, int) or self.beam_size < 1:
            raise ValueError(f"beam_size must be an int >= 1, got {self.beam_size!r}")
        if self.beam_size_token is not None and (not isinstance(self.beam_size_token, int) or self.beam_size_token < 1):
            raise ValueError(f"beam_size_token must be null or an int >= 1, got {self.beam_size_token!r}")
        for name in ("beam_threshold", "lm_weight", "word_score"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        if self.beam_threshold <= 0:
            raise ValueError(f"beam_threshold must be > 0, got {self.beam_threshold!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> BeamConfig:
        reject_unknown(cls, d, "beam")
        return cls(**d)


class LexiconBeamDecoder:
    """Beam search over a lexicon with a KenLM-readable LM (ARPA or KenLM binary), or none.

    ``lm=None`` decodes with the lexicon only (no LM scores): words are still
    restricted to the lexicon.
    """

    def __init__(
        self, vocab: CharVocab, lexicon: str | os.PathLike, lm: str | os.PathLike | None, cfg: BeamConfig = BeamConfig()
    ) -> None:
        from flashlight.lib.text.decoder import SmearingMode, Trie, ZeroLM
        from flashlight.lib.text.decoder.kenlm import KenLM
        from flashlight.lib.text.dictionary import Dictionary, create_word_dict

        if " " not in vocab.symbols:
            raise ValueError(f"the vocabulary has no space (word separator): {vocab.symbols!r}")
        if SEPARATOR in vocab.symbols or BLANK_NAME in vocab.symbols:
            raise ValueError(f"the vocabulary holds {SEPARATOR!r} or {BLANK_NAME!r}, reserved for the decoder")
        self.vocab, self.cfg = vocab, cfg
        names = [SEPARATOR if s == " " else s for s in vocab.symbols] + [BLANK_NAME]  # index order
        self._tokens = Dictionary(names)
        self._sil, self._blank = vocab.symbols.index(" "), vocab.blank
        spellings = read_lexicon(lexicon)
        for word, spelling in spellings.items():
            bad = [t for t in spelling if t not in names[:-1]]
            if bad:
                raise ValueError(
                    f"{lexicon}: word {word!r}: spelling {spelling} uses token(s) {bad} "
                    f"that are not in the model's vocabulary {names[:-1]}"
                )
        self._spelled = {w: "".join(s).rstrip(SEPARATOR) for w, s in spellings.items()}
        # as flashlight's load_words does: <unk> is a word with no spelling (never in the trie)
        self._words = create_word_dict({**{w: [s] for w, s in spellings.items()}, "<unk>": []})
        if lm is not None:
            if not Path(lm).is_file():
                raise FileNotFoundError(f"language model not found: {lm}")
            self._lm = KenLM(str(lm), self._words)
        else:
            self._lm = ZeroLM()
        self._unk = self._words.get_index("<unk>")
        self._trie = Trie(len(names), self._sil)
        start = self._lm.start(False)
        for word, spelling in spellings.items():
            idx = self._words.get_index(word)
            _, score = self._lm.score(start, idx)
            self._trie.insert([self._tokens.get_index(t) for t in spelling], idx, score)
        self._trie.smear(SmearingMode.MAX)
        self._decoder = self._build()

    def _build(self):
        from flashlight.lib.text.decoder import (
            CriterionType,
            LexiconDecoder,
            LexiconDecoderOptions,
        )

        c = self.cfg
        opts = LexiconDecoderOptions(
            beam_size=c.beam_size,
            beam_size_token=c.beam_size_token or self.vocab.num_outputs,
            beam_threshold=c.beam_threshold,
            lm_weight=c.lm_weight,
            word_score=c.word_score,
            unk_score=float("-inf"),
            sil_score=0.0,
            log_add=c.log_add,
            criterion_type=CriterionType.CTC,
        )
        return LexiconDecoder(opts, self._trie, self._lm, self._sil, self._blank, self._unk, [], False)

    def with_weights(self, lm_weight: float, word_score: float) -> LexiconBeamDecoder:
        """A decoder sharing this one's LM and trie, with other weights (cheap: for tuning)."""
        other = object.__new__(LexiconBeamDecoder)
        other.__dict__.update(self.__dict__)
        other.cfg = replace(self.cfg, lm_weight=float(lm_weight), word_score=float(word_score))
        other._decoder = other._build()
        return other

    def decode_one(self, log_probs: torch.Tensor) -> str:
        """log_probs: (T, V) -> the best word sequence, words spelled in the model's characters."""
        if log_probs.ndim != 2 or log_probs.size(1) != self.vocab.num_outputs:
            raise ValueError(f"expected log-probs (T, {self.vocab.num_outputs}), got {tuple(log_probs.shape)}")
        if log_probs.size(0) == 0:
            return ""
        x = log_probs.detach().to("cpu", torch.float32).contiguous()
        results = self._decoder.decode(x.data_ptr(), x.size(0), x.size(1))
        if not results:
            return ""
        words = (self._words.get_entry(i) for i in results[0].words if i >= 0)
        return " ".join(self._spelled[w] for w in words if w in self._spelled)

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor | None = None) -> list[str]:
        """log_probs: (B, T, V), lengths: (B,) valid frames -> B transcripts."""
        if log_probs.ndim != 3:
            raise ValueError(f"expected log-probs (B, T, V), got {tuple(log_probs.shape)}")
        lens = lengths.tolist() if lengths is not None else [log_probs.size(1)] * log_probs.size(0)
        return [self.decode_one(log_probs[b, : int(n)]) for b, n in enumerate(lens)]


def tune_weights(
    decoder: LexiconBeamDecoder,
    log_probs: Sequence[torch.Tensor],
    refs: Sequence[str],
    lm_weights: Iterable[float],
    word_scores: Iterable[float],
) -> dict:
    """Grid search of (lm_weight, word_score) by corpus WER on the given utterances.

    Call it with a tuning split's emissions (the dev split, never a test split).
    Returns ``{"grid": [{"lm_weight", "word_score", "wer"}...], "lm_weight", "word_score", "wer"}``;
    ties go to the earlier grid point.
    """
    from asr_core.decoding.metrics import corpus_errors

    if len(log_probs) != len(refs) or not refs:
        raise ValueError(f"tuning needs one reference per utterance, got {len(log_probs)} emissions, {len(refs)} refs")
    grid, best = [], None
    for w in lm_weights:
        for s in word_scores:
            dec = decoder.with_weights(w, s)
            hyps = [dec.decode_one(lp) for lp in log_probs]
            wer = corpus_errors(zip(refs, hyps))["wer"]
            grid.append({"lm_weight": float(w), "word_score": float(s), "wer": round(wer, 6)})
            if best is None or wer < best["wer"]:
                best = grid[-1]
    if best is None:
        raise ValueError("empty tuning grid: give at least one lm_weight and one word_score")
    return {"grid": grid, "lm_weight": best["lm_weight"], "word_score": best["word_score"], "wer": best["wer"]}


__all__ = ["BeamConfig", "LexiconBeamDecoder", "tune_weights"]
