"""Test helpers shipped with the package (lhotse style): deterministic audio and corpora."""

from asr_core.testing.audio import make_wave, write_audio

__all__ = ["make_wave", "write_audio"]
