"""Export stage: ONNX / OpenVINO parity with PyTorch on padded mixed-length batches, the gate, transcribe."""

import json

import numpy as np
import pytest
import torch

from asr_core.export import BackendUnavailable, RunnerSpec, make_runner
from asr_core.export.parity import compare, fp32_gate, reduced_gate
from asr_core.models import build_model
from asr_core.testing.ctc_case import tiny_ctc_case
from tasks import export as export_task
from tasks import transcribe as transcribe_task

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
DURATIONS = (0.6, 1.7, 1.1, 2.3, 0.9)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny random QuartzNet, a 5-utterance test split of mixed lengths, and its exports."""
    root = tmp_path_factory.mktemp("export")
    path, _ = tiny_ctc_case(root, DURATIONS)
    section = {
        "manifest_dir": str(root / "data"),
        "num_workers": 0,
        "batch_seconds": 60,
        "reduced_precision": ["openvino_bf16", "openvino_fp16w"],
        "wer_tolerance": 1.0,
    }
    report = export_task.run(section, path, root / "exports" / "m")
    return root, path, section, report


def test_export_writes_files_and_passes_the_gate(ov_bf16, exported):
    root, _, _, report = exported
    out = root / "exports" / "m"
    for rel in (
        "model.onnx",
        "openvino/model.xml",
        "openvino/model.bin",
        "openvino_fp16/model.xml",
        "export.json",
        "model_wave.onnx",
        "openvino_wave/model.xml",
    ):  # waveform graph: tests/asr_core/export/test_waveform.py
        assert (out / rel).is_file(), rel
    assert set(report["backends"]) == {
        "onnxruntime_fp32",
        "openvino_fp32",
        "openvino_bf16",
        "openvino_fp16w",
        "openvino_wave_fp32",
        "openvino_wave_bf16",
    }
    assert not list(root.joinpath("exports").glob(".*partial"))
    assert report["passed"] and report["utterances"] == len(DURATIONS)
    for name in ("onnxruntime_fp32", "openvino_fp32"):
        r = report["backends"][name]
        assert r["gate"] == "fp32" and r["passed"], r
        assert r["max_abs_diff"] <= 1e-3 and r["transcripts_differ"] == 0 and r["length_mismatches"] == 0
        assert r["wer"] == r["wer_torch"]
    if ov_bf16:
        assert report["backends"]["openvino_bf16"]["gate"] == "wer"
        assert 0 < report["backends"]["openvino_bf16"]["max_abs_diff"] < 1.0  # bf16 really ran in bf16
    else:
        assert "no bf16" in report["backends"]["openvino_bf16"]["skipped"]
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["files"]["model.onnx"] == report["files"]["model.onnx"]
    json.dumps(report, allow_nan=False)


@pytest.mark.parametrize("name", ["onnxruntime_fp32", "openvino_fp32"])
def test_padded_batch_equals_each_utterance_alone(exported, name):
    root, _, _, _ = exported
    runner = make_runner(name, export_dir=root / "exports" / "m", threads=1)
    torch.manual_seed(3)
    lens = torch.tensor([160, 37, 96])  # not the trace's shapes, padding full of noise
    x = torch.randn(3, 64, 160)
    log_probs, out_lens = runner(x, lens)
    for i, n in enumerate(lens.tolist()):
        alone, alone_lens = runner(x[i : i + 1, :, :n], lens[i : i + 1])
        assert out_lens[i] == alone_lens[0]
        k = int(alone_lens[0])
        np.testing.assert_allclose(log_probs[i, :k].numpy(), alone[0, :k].numpy(), atol=1e-4, rtol=0)


def test_openvino_static_shapes_match_dynamic(exported):
    root = exported[0]
    dynamic = make_runner("openvino_fp32", export_dir=root / "exports" / "m", threads=1)
    static = make_runner("openvino_fp32", export_dir=root / "exports" / "m", threads=1, static_shapes=True)
    x, lens = torch.randn(2, 64, 48), torch.tensor([48, 30])
    want = dynamic(x, lens)
    for _ in range(2):  # compiled once for the shape, then reused
        got = static(x, lens)
        np.testing.assert_allclose(got[0].numpy(), want[0].numpy(), atol=1e-4, rtol=0)
        assert got[1].tolist() == want[1].tolist()
    assert list(static._by_shape) == [((2, 64, 48), False)]
    # an unpadded batch (every length == T) runs a model with the lengths bound as constants
    full = torch.tensor([48, 48])
    want, got = dynamic(x, full), static(x, full)
    np.testing.assert_allclose(got[0].numpy(), want[0].numpy(), atol=1e-4, rtol=0)
    assert got[1].tolist() == want[1].tolist()
    assert list(static._by_shape) == [((2, 64, 48), False), ((2, 64, 48), True)]
    inputs = static._by_shape[((2, 64, 48), True)][0].inputs
    assert len(inputs) == 1 and "features" in inputs[0].get_names()
    # equal lengths in a longer tensor (the features' pad_to): cut to the lengths, then bound as well
    same = torch.tensor([40, 40])
    want, got = dynamic(x, same), static(x, same)
    assert got[1].tolist() == want[1].tolist()
    n = int(want[1][0])
    assert got[0].shape[1] >= n
    np.testing.assert_allclose(got[0][:, :n].numpy(), want[0][:, :n].numpy(), atol=1e-4, rtol=0)
    assert ((2, 64, 40), True) in static._by_shape
    # a padded batch is cut to its longest row, and keeps its lengths input
    static(x, torch.tensor([40, 30]))
    assert ((2, 64, 40), False) in static._by_shape


def test_failed_gate_fails_the_stage_and_publishes_nothing(exported, tmp_path, monkeypatch):
    root, path, section, _ = exported
    import asr_core.objectives.ctc.export as ctc_export

    real = ctc_export.make_runner

    def perturbed(name, **kw):
        runner = real(name, **kw)
        if str(name) != "onnxruntime_fp32":
            return runner

        def run(feats, lens):
            lp, ll = runner(feats, lens)
            return lp + 0.01, ll  # beyond the 1e-3 tolerance, same argmax

        return run

    monkeypatch.setattr(ctc_export, "make_runner", perturbed)
    params = tmp_path / "export.yaml"
    params.write_text(json.dumps({"export": {**section, "reduced_precision": []}}))
    with pytest.raises(export_task.ParityError, match="onnxruntime_fp32"):
        export_task.main(
            [
                "--params",
                str(params),
                "--model",
                str(path),
                "--out",
                str(tmp_path / "out"),
                "--report",
                str(tmp_path / "export.json"),
            ]
        )
    assert not (tmp_path / "out").exists()
    report = json.loads((tmp_path / "export.json").read_text())
    assert not report["passed"] and report["backends"]["onnxruntime_fp32"]["max_abs_diff"] == pytest.approx(
        0.01, abs=1e-3
    )
    assert (
        report["backends"]["onnxruntime_fp32"]["transcripts_differ"] == 0
        and report["backends"]["openvino_fp32"]["passed"]
    )


def test_gates_and_params_errors(tmp_path):
    base = {"max_abs_diff": 2e-4, "length_mismatches": 0, "transcripts_differ": 0, "wer_change": 0.02}
    assert fp32_gate(base, 1e-3)["passed"] and not fp32_gate({**base, "transcripts_differ": 1}, 1e-3)["passed"]
    assert not fp32_gate({**base, "length_mismatches": 1}, 1e-3)["passed"]
    assert reduced_gate(base, 0.05)["passed"] and not reduced_gate(base, 0.01)["passed"]
    with pytest.raises(ValueError, match="colour"):
        export_task.run({"colour": 1}, tmp_path / "m.pt", tmp_path / "out")
    with pytest.raises(ValueError, match="openvino_int3"):
        export_task.run({"reduced_precision": ["openvino_int3"]}, tmp_path / "m.pt", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="m.pt"):
        export_task.run({}, tmp_path / "m.pt", tmp_path / "out")


def test_compare_counts_differences():
    from asr_core.export.parity import Decoded

    a = Decoded(["a cat", "a dog"], [3, 2], [np.zeros((3, 2)), np.zeros((2, 2))])
    b = Decoded(["a cat", "a fog"], [3, 1], [np.full((3, 2), 0.5), np.zeros((1, 2))])
    r = compare(a, b, ["a cat", "a dog"])
    assert r["max_abs_diff"] == 0.5 and r["length_mismatches"] == 1 and r["transcripts_differ"] == 1
    assert r["wer"] == 0.25 and r["wer_torch"] == 0.0


def test_runner_names_and_unavailable_backends(exported):
    assert RunnerSpec.parse("torch_fp16_graphs") == RunnerSpec("torch", "fp16", True)
    assert RunnerSpec.parse("openvino_bf16").name == "openvino_bf16"
    assert RunnerSpec.parse("openvino_wave_fp32") == RunnerSpec("openvino", "fp32", wave=True)
    for bad in ("tensorrt_fp32", "openvino_int3", "onnxruntime_fp32_graphs", "torch"):
        with pytest.raises(ValueError):
            RunnerSpec.parse(bad)
    model = build_model("quartznet", "tiny", 29)
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailable, match="no CUDA"):
            make_runner("torch_fp32", model=model, device="cuda")
        with pytest.raises(BackendUnavailable, match="needs CUDA"):
            make_runner("torch_fp16", model=model)
    with pytest.raises(FileNotFoundError, match="export stage"):
        make_runner("openvino_fp32", export_dir=exported[0] / "nowhere")


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_transcribe_with_exported_backend_matches_torch(exported, backend, monkeypatch):
    root, path, _, _ = exported
    monkeypatch.chdir(root)  # --exports defaults to exports/<model folder name>
    files = [str(root / "data" / "audio" / f"u{i}.flac") for i in range(3)]
    want = transcribe_task.main(["--model", str(path), *files])
    assert transcribe_task.main(["--model", str(path), "--backend", backend, *files]) == want
    with pytest.raises(SystemExit):
        transcribe_task.main(["--model", str(path), "--backend", backend, "--exports", str(root / "none"), files[0]])
