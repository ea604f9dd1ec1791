"""Export of CTC networks (ONNX, OpenVINO IR), backend runners and the parity checks.

    export_onnx(model, "exports/m/model.onnx", in_features=64)
    export_openvino("exports/m/model.onnx", "exports/m/openvino")
    runner = make_runner("openvino_bf16", export_dir="exports/m")   # runner(feats, lens)

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

__all__ = ["BackendUnavailable", "Runner", "RunnerSpec", "export_file", "export_onnx", "export_openvino",
           "make_runner"]
