"""Feature extraction and augmentation for the QuartzNet / Jasper family (DLE-compatible).

``dali`` (NVIDIA DALI loader) is imported on demand: ``from asr_core.features.dali import
build_dali_loader``.
"""

from asr_core.features.augment import (
    SpecAugment,
    SpecAugmentConfig,
    SpeedPerturb,
    SpeedPerturbConfig,
    TrimSilenceConfig,
    nonsilent_interval,
    speed_perturb,
    trim_silence,
)
from asr_core.features.filterbank import (
    FilterbankConfig,
    FilterbankFeatures,
    feature_lengths,
    mel_filterbank,
    normalize_batch,
)


def build_features(cfg):
    """The feature module a config describes: :class:`FilterbankFeatures` for a
    :class:`FilterbankConfig`, else ``cfg.module()`` (wav2vec 2.0's ``WaveformConfig``: the
    waveform itself, normalised per utterance), both called as ``(audio, lengths) -> (x, x_lens)``."""
    return FilterbankFeatures(cfg) if isinstance(cfg, FilterbankConfig) else cfg.module()


__all__ = [
    "build_features",
    "FilterbankConfig",
    "FilterbankFeatures",
    "SpecAugment",
    "SpecAugmentConfig",
    "SpeedPerturb",
    "SpeedPerturbConfig",
    "TrimSilenceConfig",
    "feature_lengths",
    "mel_filterbank",
    "nonsilent_interval",
    "normalize_batch",
    "speed_perturb",
    "trim_silence",
]
