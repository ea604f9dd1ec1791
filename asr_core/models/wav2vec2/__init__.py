"""wav2vec 2.0 (Baevski et al. 2020; fairseq, NVIDIA DLE): raw-waveform encoder, Hourglass
Transformer, Gumbel product quantiser, contrastive pre-training, CTC fine-tuning, fairseq import.

    cfg = wav2vec2_base(hourglass="[2, (8, 4), 2]")
    ctc = wav2vec2_ctc_model(cfg, num_outputs=29)          # CTCModel: (B, S) samples -> log-probs
    pre = wav2vec2_pretraining_model(cfg)                  # per-utterance contrastive terms

Files: ``config.py`` (config, presets, layer plan), ``frontend.py`` (waveform normalisation,
conv feature encoder), ``transformer.py`` (positional conv, layers, Hourglass), ``masking.py``,
``quantizer.py``, ``losses.py``, ``model.py``, ``fairseq.py`` (checkpoint import).
"""

from asr_core.models.wav2vec2.config import (
    HOURGLASS_DEFAULT,
    PRESETS,
    Wav2Vec2Config,
    parse_hourglass,
    wav2vec2_base,
    wav2vec2_large,
    wav2vec2_tiny,
)
from asr_core.models.wav2vec2.frontend import ConvFeatureEncoder, WaveformConfig, WaveformFeatures
from asr_core.models.wav2vec2.losses import contrastive_terms, pretraining_loss, utterance_generators
from asr_core.models.wav2vec2.model import (
    Wav2Vec2Encoder,
    Wav2Vec2ForPreTraining,
    wav2vec2_ctc_model,
    wav2vec2_pretraining_model,
)
from asr_core.models.wav2vec2.quantizer import GumbelVectorQuantizer
from asr_core.models.wav2vec2.transformer import TransformerEncoder

__all__ = [
    "HOURGLASS_DEFAULT",
    "PRESETS",
    "ConvFeatureEncoder",
    "GumbelVectorQuantizer",
    "TransformerEncoder",
    "Wav2Vec2Config",
    "Wav2Vec2Encoder",
    "Wav2Vec2ForPreTraining",
    "WaveformConfig",
    "WaveformFeatures",
    "contrastive_terms",
    "parse_hourglass",
    "pretraining_loss",
    "utterance_generators",
    "wav2vec2_base",
    "wav2vec2_ctc_model",
    "wav2vec2_large",
    "wav2vec2_pretraining_model",
    "wav2vec2_tiny",
]
