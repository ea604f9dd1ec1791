"""The built-in offline synthetic speech corpus: grammar sentences spoken by espeak-ng voices.

``build_synthetic_corpus(SynthConfig(...), out_dir)`` writes FLAC files and returns the
:class:`~asr_core.data.items.SourceItem` rows; ``plan_corpus`` gives the same utterances
(text, voice, parameters) without synthesising anything.
"""

from asr_core.data.synth.corpus import (
    SHARD_SIZE,
    SPLITS,
    SynthConfig,
    UttSpec,
    build_synthetic_corpus,
    held_out_voices,
    plan_corpus,
    plan_split,
    split_of_sentence,
    voice_grid,
)
from asr_core.data.synth.espeak import ACCENTS, SAMPLE_RATE, VARIANTS
from asr_core.data.synth.grammar import make_sentence
from asr_core.data.synth.lexicon import vocabulary

__all__ = [
    "ACCENTS",
    "SAMPLE_RATE",
    "SHARD_SIZE",
    "SPLITS",
    "VARIANTS",
    "SynthConfig",
    "UttSpec",
    "build_synthetic_corpus",
    "held_out_voices",
    "make_sentence",
    "plan_corpus",
    "plan_split",
    "split_of_sentence",
    "vocabulary",
    "voice_grid",
]
