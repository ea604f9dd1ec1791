"""Tokenizers: the CTC character vocabulary and sentencepiece subwords."""

from asr_core.tokenizer.sentencepiece import SentencePieceConfig, train_sentencepiece

__all__ = ["SentencePieceConfig", "train_sentencepiece"]
