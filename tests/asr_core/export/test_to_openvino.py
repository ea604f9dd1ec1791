"""The OpenVINO conversion stays offline: no usage-reporting process, nothing left to wait for at exit."""

from __future__ import annotations

import subprocess
import sys

from tests import REPO

SCRIPT = """
import multiprocessing, sys, torch
from asr_core.export.to_openvino import export_openvino
out = sys.argv[1]
torch.onnx.export(torch.nn.Linear(4, 3), (torch.randn(2, 4),), out + "/m.onnx", dynamo=False)
export_openvino(out + "/m.onnx", out + "/ir")
assert sys.modules.get("openvino_telemetry") is None, "the converter loaded its telemetry"
assert not multiprocessing.active_children(), multiprocessing.active_children()
print("converted")
"""


def test_conversion_starts_no_telemetry_process(tmp_path):
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0 and "converted" in r.stdout, r.stdout + r.stderr
    assert (tmp_path / "ir" / "model.xml").is_file()
