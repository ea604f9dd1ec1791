"""Export of CTC networks (ONNX, OpenVINO IR), backend runners and the parity checks.

    export_onnx(model, "exports/m/model.onnx", in_features=64)
    export_openvino("exports/m/model.onnx", "exports/m/openvino")
    runner = make_runner("openvino_bf16", export_dir="exports/m")   # runner(feats, lens)
    export_waveform_onnx(model, features, "exports/m/model_wave.onnx")   # filterbank in the graph
    export_openvino("exports/m/model_wave.onnx", "exports/m/openvino_wave")
    runner = make_runner("openvino_wave_bf16", export_dir="exports/m")   # runner(audio, audio_lens)

No MLflow/DVC here: ``tasks/export.py`` is the stage.
"""

from asr_core.export.runtime import (
    BackendUnavailable,
    Runner,
    RunnerSpec,
    export_file,
    make_runner,
)
from asr_core.export.to_onnx import export_onnx
from asr_core.export.to_openvino import export_openvino
from asr_core.export.waveform import WaveformCTC, export_waveform_onnx

__all__ = [
    "BackendUnavailable",
    "Runner",
    "RunnerSpec",
    "WaveformCTC",
    "export_file",
    "export_onnx",
    "export_openvino",
    "export_waveform_onnx",
    "make_runner",
]
