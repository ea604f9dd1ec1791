"""Test helpers shipped with the package (lhotse style): deterministic audio and corpora."""

from asr_core.testing.audio import make_wave, write_audio
from asr_core.testing.corpus import SMALL_QUARTZNET, make_corpus, make_sentencepiece

__all__ = ["SMALL_QUARTZNET", "make_corpus", "make_sentencepiece", "make_wave", "write_audio"]
