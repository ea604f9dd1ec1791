"""The RNN-Transducer family (edgedict): stacked log-mel front end, residual LayerNorm-LSTM
encoder, LSTM prediction network, joint network, torchaudio's RNN-T loss (blank 0).

    model = rnnt_model(rnnt_e6d2(), num_outputs=2048)   # 50.8 M parameters
    loss = model(feats, feat_lens, tokens, token_lens)

Decoding (greedy, beam, streaming) is in ``asr_core.decoding.rnnt_*``.
"""

from asr_core.models.rnnt.config import (
           PRESETS,
           RNNTConfig,
           rnnt_e4d1,
           rnnt_e6d2,
           rnnt_tiny,
)
from asr_core.models.rnnt.encoder import RNNTEncoder, time_reduce
from asr_core.models.rnnt.frontend import FrontEnd, stack_frames
from asr_core.models.rnnt.joint import Joint
from asr_core.models.rnnt.loss import rnnt_loss
from asr_core.models.rnnt.model import Transducer, rnnt_model
from asr_core.models.rnnt.predictor import Predictor

__all__ = ["PRESETS", "FrontEnd", "Joint", "Predictor", "RNNTConfig", "RNNTEncoder", "Transducer",
           "rnnt_e4d1", "rnnt_e6d2", "rnnt_loss", "rnnt_model", "rnnt_tiny", "stack_frames", "time_reduce"]
