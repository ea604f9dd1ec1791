"""CTC network (features -> log-probs) to ONNX with dynamic batch and time axes.

The graph takes ``features`` (B, F, T) float32 and ``feature_lens`` (B,) int64 and returns
``log_probs`` (B, T', V) float32 and ``log_prob_lens`` (B,) int64, exactly the PyTorch
module's ``forward``. Features stay outside the graph (computed by
:class:`~asr_core.features.FilterbankFeatures`), as in training and evaluation.

The TorchScript exporter is used (``dynamo=False``): ``dynamo=True`` needs onnxscript, which
is not in the stack. The trace uses two utterances of different lengths so the length
masking of every convolution is traced as a computation on ``feature_lens``, not a constant.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from asr_core.io.atomic import atomic_path

INPUT_NAMES = ("features", "feature_lens")
OUTPUT_NAMES = ("log_probs", "log_prob_lens")
OPSET = 17


def export_onnx(model: nn.Module, path: str | os.PathLike, *, in_features: int | None, opset: int = OPSET) -> Path:
    """Write ``model`` (in eval mode, on the CPU) as an ONNX file at ``path``, atomically.

    ``in_features=None``: a waveform model (wav2vec 2.0): ``features`` is (B, S) samples.
    """
    path = Path(path)
    model = model.eval().cpu()
    if in_features is None:
        example = (torch.randn(2, 16000), torch.tensor([16000, 9000]))
        time_axis = 1
    else:
        example = (torch.randn(2, in_features, 96), torch.tensor([96, 57]))
        time_axis = 2
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # the TorchScript exporter's notice
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            model,
            example,
            str(tmp),
            dynamo=False,
            opset_version=opset,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={
                "features": {0: "batch", time_axis: "time"},
                "feature_lens": {0: "batch"},
                "log_probs": {0: "batch", 1: "time_out"},
                "log_prob_lens": {0: "batch"},
            },
        )
    import onnx

    onnx.checker.check_model(str(path))
    return path
