"""ONNX graph to OpenVINO IR (``model.xml`` + ``model.bin``) with ``openvino.convert_model``.

``compress_to_fp16=True`` stores the weights in fp16 (half the file); the CPU plugin
decompresses them at load time, so results differ from the fp32 IR by the weight rounding
only. Inference precision (f32, bf16, f16) is a run-time hint, not a property of the file:
see :mod:`asr_core.export.runtime`.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path


def _without_telemetry() -> None:
    """Keep OpenVINO's converter from reporting usage over the network.

    ``openvino.convert_model`` sends usage events (opt-out, no environment switch) from a forked
    process that tries to reach the internet; offline, that child can hang on a lock inherited
    from the fork and then hold up the interpreter's exit. With the telemetry package marked
    absent, the converter uses its own no-op stub. Nothing else imports that package.
    """
    sys.modules.setdefault("openvino_telemetry", None)
    sys.modules.setdefault("openvino_telemetry.backend", None)


def export_openvino(
    onnx_path: str | os.PathLike, out_dir: str | os.PathLike, *, compress_to_fp16: bool = False, transform=None
) -> Path:
    """Convert ``onnx_path`` to ``out_dir/model.xml`` (+ ``.bin``); the folder appears whole or not at all.
    ``transform(ov_model) -> ov_model`` runs before saving (e.g. NNCF's weight compression)."""
    _without_telemetry()
    import openvino as ov

    onnx_path, out_dir = Path(onnx_path), Path(out_dir)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {onnx_path}")
    ov_model = ov.convert_model(str(onnx_path))
    if transform is not None:
        ov_model = transform(ov_model)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        ov.save_model(ov_model, str(tmp / "model.xml"), compress_to_fp16=compress_to_fp16)
        tmp.chmod(0o755)  # mkdtemp's 0700 would make the published folder private
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir / "model.xml"
