"""Text normalisation and vocabularies."""

from asr_core.text.normalize import ALPHABET, normalize_text, out_of_alphabet
from asr_core.text.vocab import CharVocab

__all__ = ["ALPHABET", "CharVocab", "normalize_text", "out_of_alphabet"]
