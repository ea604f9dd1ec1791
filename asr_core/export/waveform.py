"""Waveform-input CTC graph: filterbank + network in one ONNX / OpenVINO model.

The graph takes ``audio`` (B, S) float32 (zero padded) and ``audio_lens`` (B,) int64 and returns
``log_probs`` (B, T', V) float32 and ``log_prob_lens`` (B,) int64, the same outputs as the
feature graph (:mod:`asr_core.export.to_onnx`) over the valid frames, so a model can be served
without torch (T' can be a little shorter: see :meth:`WaveformCTC.forward`).

The filterbank (:class:`~asr_core.features.FilterbankFeatures`) exports itself: under
``torch.onnx`` it computes the STFT as a conv1d with a real DFT basis (the exporter rejects
``torch.stft``'s complex output), reflect-pads each row at its own length with gather/scatter,
and pads the frames to ``pad_to`` with a symbolic slice. Dither is off (eval mode).

    export_waveform_onnx(model, features, "exports/m/model_wave.onnx")
    export_openvino("exports/m/model_wave.onnx", "exports/m/openvino_wave")
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from asr_core.export.to_onnx import OPSET, OUTPUT_NAMES
from asr_core.io.atomic import atomic_path

WAVE_INPUT_NAMES = ("audio", "audio_lens")
WAVE_ONNX = "model_wave.onnx"
WAVE_OPENVINO_DIR = "openvino_wave"


class WaveformCTC(nn.Module):
    """``(audio (B, S), audio_lens (B,)) -> features -> model -> (log_probs, log_prob_lens)``."""

    def __init__(self, features: nn.Module, model: nn.Module) -> None:
        super().__init__()
        if getattr(features, "feature_dim", None) is None:
            raise ValueError(
                "WaveformCTC needs a filterbank feature module (FilterbankFeatures); "
                "a waveform model (wav2vec 2.0) already takes audio"
            )
        self.features, self.model = features, model

    def forward(self, audio: torch.Tensor, audio_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats, feat_lens = self.features(audio, audio_lens)
        # Keep ceil(S / hop) frames, the most any row has valid: the filterbank's extra centred frame
        # and its pad_to frames are zeros the network masks anyway. The count follows the input's
        # shape, not the lengths' values (static shapes stay static), and equals the lengths of an
        # unpadded batch, so a runner that binds them lets OpenVINO fold every length mask away.
        hop = self.features.hop_length
        return self.model(feats[..., : (audio.size(1) + hop - 1) // hop], feat_lens)


def export_waveform_onnx(model: nn.Module, features: nn.Module, path: str | os.PathLike, *, opset: int = OPSET) -> Path:
    """Write filterbank + ``model`` (eval mode, CPU, no dither) as an ONNX file at ``path``, atomically.

    Dynamic batch and sample axes. The trace uses two utterances of different lengths (neither a
    multiple of the hop) so the per-row reflection, the frame count and the length masks are
    traced as computations on ``audio_lens`` and the input's length, not constants.
    """
    path = Path(path)
    wrapper = WaveformCTC(features, model).eval().cpu()
    example = (torch.randn(2, 16037), torch.tensor([16037, 9011]))
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # the TorchScript exporter's notice
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # the filterbank's symbolic slices are left to the runtime to fold: harmless notice
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
        torch.onnx.export(
            wrapper,
            example,
            str(tmp),
            dynamo=False,
            opset_version=opset,
            input_names=list(WAVE_INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={
                "audio": {0: "batch", 1: "samples"},
                "audio_lens": {0: "batch"},
                "log_probs": {0: "batch", 1: "time_out"},
                "log_prob_lens": {0: "batch"},
            },
        )
    import onnx

    onnx.checker.check_model(str(path))
    return path
