"""Train a sentencepiece subword model (BPE or unigram) on transcripts.

The transducer (RNN-T) uses these subwords; the CTC convnets use the character
vocabulary (:class:`asr_core.text.CharVocab`). Training is deterministic for a
given text and config (single-threaded, no sampling of the input sentences).
"""

from __future__ import annotations

import io
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

    Raises ValueError with the reason when the text is too small for the requested
    vocabulary (sentencepiece's own message names the largest size possible).
    """
    import sentencepiece as spm

    lines = [t.strip() for t in texts if t.strip()]
    if not lines:
        raise ValueError("no transcripts to train the sentencepiece model on")
    out_prefix = Path(out_prefix)
    model = io.BytesIO()
    # Sentences go in through an iterator so that no temp path is recorded in the model.
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=model,
            vocab_size=cfg.vocab_size,
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
            f"sentencepiece could not train a {cfg.model_type} model of vocab_size={cfg.vocab_size} "
            f"on {len(lines)} transcripts: {e}"
        ) from e
    data = model.getvalue()
    proc = spm.SentencePieceProcessor(model_proto=data)
    vocab = "".join(f"{proc.id_to_piece(i)}\t{proc.get_score(i):g}\n" for i in range(proc.get_piece_size()))
    atomic_write_bytes(out_prefix.with_suffix(".vocab"), vocab.encode("utf-8"))
    atomic_write_bytes(out_prefix.with_suffix(".model"), data)
    return out_prefix.with_suffix(".model")
