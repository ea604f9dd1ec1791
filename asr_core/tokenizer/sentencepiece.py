"""Train a sentencepiece subword model (BPE or unigram) on transcripts.

The transducer (RNN-T) uses these subwords; the CTC convnets use the character
vocabulary (:class:`asr_core.text.CharVocab`). Training is deterministic for a
given text and config (single-threaded, no sampling of the input sentences).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from asr_core.config import reject_unknown
from asr_core.io.atomic import atomic_write_bytes


@dataclass
class SentencePieceConfig:
    vocab_size: int = 256
    model_type: str = "bpe"  # bpe | unigram
    character_coverage: float = 1.0
    # A vocab_size the train text cannot support (a small corpus: 10 words give at most ~90 BPE
    # pieces) is lowered to the largest it supports (True) or refused (False).
    cap_to_corpus: bool = True
    # Ids follow the transducer convention: 0 is blank (<blank> as the pad piece),
    # 1 is <unk>; no BOS/EOS pieces.
    blank_piece: str = "<blank>"

    def __post_init__(self) -> None:
        if self.model_type not in ("bpe", "unigram"):
            raise ValueError(f"tokenizer.model_type must be 'bpe' or 'unigram', got {self.model_type!r}")
        if self.vocab_size < 4:
            raise ValueError(f"tokenizer.vocab_size must be >= 4, got {self.vocab_size}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SentencePieceConfig:
        reject_unknown(cls, d, "tokenizer")
        return cls(**d)


def train_sentencepiece(texts: Iterable[str], out_prefix: str | Path, cfg: SentencePieceConfig) -> Path:
    """Train on ``texts`` (one transcript each) and write ``<out_prefix>.model``/``.vocab`` atomically.

    When the text is too small for ``vocab_size``, sentencepiece names the largest size it
    supports: with ``cap_to_corpus`` the model is trained at that size (the written model's piece
    count tells), else ValueError with sentencepiece's reason.
    """
    lines = [t.strip() for t in texts if t.strip()]
    if not lines:
        raise ValueError("no transcripts to train the sentencepiece model on")
    try:
        data = _train(lines, cfg, cfg.vocab_size)
    except ValueError as e:
        largest = _largest_supported(str(e))
        if not cfg.cap_to_corpus or largest is None or largest < 4:
            raise
        data = _train(lines, cfg, largest)
    out_prefix = Path(out_prefix)
    import sentencepiece as spm

    proc = spm.SentencePieceProcessor(model_proto=data)
    vocab = "".join(f"{proc.id_to_piece(i)}\t{proc.get_score(i):g}\n" for i in range(proc.get_piece_size()))
    atomic_write_bytes(out_prefix.with_suffix(".vocab"), vocab.encode("utf-8"))
    atomic_write_bytes(out_prefix.with_suffix(".model"), data)
    return out_prefix.with_suffix(".model")


def _largest_supported(message: str) -> int | None:
    """The size in sentencepiece's "Vocabulary size too high (N). Please set it to a value <= M." """
    m = re.search(r"Vocabulary size too high \(\d+\)\. Please set it to a value <= (\d+)", message)
    return int(m.group(1)) if m else None


def _train(lines: list[str], cfg: SentencePieceConfig, vocab_size: int) -> bytes:
    """The serialised model proto of one sentencepiece training run."""
    import sentencepiece as spm

    model = io.BytesIO()
    # Sentences go in through an iterator so that no temp path is recorded in the model.
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=model,
            vocab_size=vocab_size,
            model_type=cfg.model_type,
            character_coverage=cfg.character_coverage,
            pad_id=0,
            pad_piece=cfg.blank_piece,
            unk_id=1,
            bos_id=-1,
            eos_id=-1,
            num_threads=1,
            input_sentence_size=0,
            shuffle_input_sentence=False,
            minloglevel=2,
        )
    except RuntimeError as e:
        raise ValueError(
            f"sentencepiece could not train a {cfg.model_type} model of vocab_size={vocab_size} "
            f"on {len(lines)} transcripts: {e}"
        ) from e
    return model.getvalue()
