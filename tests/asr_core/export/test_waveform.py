"""Waveform-input export (filterbank + network in one graph): parity with PyTorch, the export gate,
the openvino_wave runners, the benchmark grid with them, transcribe."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from asr_core.bench.grid import ClipLoader, make_clips
from asr_core.export import RunnerSpec, WaveformCTC, export_file, make_runner
from asr_core.features import FilterbankConfig, FilterbankFeatures
from asr_core.models import greedy_decode
from asr_core.objectives.ctc.export import wave_variants
from asr_core.testing.ctc_case import tiny_ctc_case
from tasks import benchmark as bench_task
from tasks import export as export_task
from tasks import transcribe as transcribe_task

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
DURATIONS = (0.6, 1.3, 0.9)


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    """A tiny random QuartzNet, a 3-utterance test split of mixed lengths, the export stage's folder."""
    root = tmp_path_factory.mktemp("wave")
    path, model = tiny_ctc_case(root, DURATIONS, sub_blocks=1)
    section = {
        "manifest_dir": str(root / "data"),
        "num_workers": 0,
        "batch_seconds": 60,
        "reduced_precision": ["openvino_bf16"],
        "wer_tolerance": 1.0,
    }
    report = export_task.run(section, path, root / "exports" / "m")
    model.eval()
    return root, path, model, report


def test_stage_writes_and_gates_the_waveform_graph(stage, ov_bf16):
    root, _, _, report = stage
    out = root / "exports" / "m"
    for rel in ("model_wave.onnx", "openvino_wave/model.xml", "openvino_wave/model.bin"):
        assert (out / rel).is_file() and rel in report["files"], rel
    r = report["backends"]["openvino_wave_fp32"]
    assert r["gate"] == "fp32" and r["passed"] and r["utterances"] == len(DURATIONS), r
    assert r["max_abs_diff"] <= report["fp32_max_abs_diff_tolerance"] == 1e-3
    assert r["transcripts_differ"] == 0 and r["length_mismatches"] == 0 and r["wer"] == r["wer_torch"]
    bf16 = report["backends"]["openvino_wave_bf16"]
    assert bf16["gate"] == "wer" if ov_bf16 else "no bf16" in bf16["skipped"]
    manifest = json.loads((out / "export.json").read_text())
    assert set(manifest["waveform"]["inputs"]) == {"audio", "audio_lens"}
    assert manifest["waveform"]["features"]["n_mels"] == 64


def test_waveform_variants_follow_the_params():
    fb = FilterbankFeatures()
    opts = export_task._options({})
    assert wave_variants(opts, fb) == ("openvino_wave_fp32", "openvino_wave_bf16")
    assert wave_variants(export_task._options({"reduced_precision": []}), fb) == ("openvino_wave_fp32",)
    assert wave_variants(export_task._options({"waveform": False}), fb) == ()
    from asr_core.models.wav2vec2 import WaveformConfig

    assert wave_variants(opts, WaveformConfig().module()) == ()  # takes audio already
    with pytest.raises(ValueError, match="waveform"):
        export_task._options({"waveform": "yes"})
    with pytest.raises(ValueError, match="filterbank"):
        WaveformCTC(WaveformConfig().module(), torch.nn.Identity())


def _padded(lens, seed=3):
    """A batch padded with noise, not zeros: the graph must never read past a row's length."""
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(len(lens), max(lens), generator=g), torch.tensor(lens)


@pytest.mark.parametrize("static_shapes", [False, True])
def test_openvino_wave_equals_torch_features_and_model(stage, static_shapes):
    root, _, model, _ = stage
    runner = make_runner(
        "openvino_wave_fp32", export_dir=root / "exports" / "m", threads=1, static_shapes=static_shapes
    )
    assert runner.takes_waveform and runner.name == "openvino_wave_fp32"
    fb = FilterbankFeatures(FilterbankConfig()).eval()
    for lens in ([23456, 12001, 5000], [9000, 8999], [7000, 7000]):  # not the trace's shapes; the last unpadded
        x, x_lens = _padded(lens)
        with torch.inference_mode():
            want, want_lens = model(*fb(x, x_lens))
        got, got_lens = runner(x, x_lens)
        assert got_lens.tolist() == want_lens.tolist()
        for i, n in enumerate(want_lens.tolist()):
            np.testing.assert_allclose(got[i, :n].numpy(), want[i, :n].numpy(), atol=1e-3, rtol=0)
        assert greedy_decode(got, got_lens) == greedy_decode(want, want_lens)
    if static_shapes:  # the unpadded batch ran a model with audio_lens bound as a constant
        compiled = runner._by_shape[((2, 7000), True)][0]
        assert len(compiled.inputs) == 1 and "audio" in compiled.inputs[0].get_names()


def test_wave_runner_names_and_files(tmp_path):
    spec = RunnerSpec.parse("openvino_wave_bf16")
    assert spec == RunnerSpec("openvino", "bf16", False, True) and spec.name == "openvino_wave_bf16"
    assert RunnerSpec.parse("openvino_bf16") == RunnerSpec("openvino", "bf16", wave=False)
    assert export_file(tmp_path, spec) == tmp_path / "openvino_wave" / "model.xml"
    for bad in (
        "openvino_wave_fp16w",
        "onnxruntime_wave_fp32",
        "torch_wave_fp32",
        "openvino_wave",
        "openvino_wave_fp32_graphs",
        "openvino_waves_fp32",
    ):
        with pytest.raises(ValueError):
            RunnerSpec.parse(bad)
    with pytest.raises(FileNotFoundError, match="export stage"):
        make_runner("openvino_wave_fp32", export_dir=tmp_path)


def test_clip_loader_without_features_gives_padded_waves(tmp_path):
    paths = make_clips(tmp_path, 0.5, 2)
    waves, lens = ClipLoader(paths, None)(3)
    assert waves.shape == (3, 8000) and waves.dtype == torch.float32 and lens.tolist() == [8000] * 3


def _bench_section(**runners):
    section = yaml.safe_load(Path("params/benchmark.yaml").read_text())["benchmark"]
    section.update(devices=["cpu"], audio_manifest=None, **runners)
    section["grid"].update(
        batch_sizes=[1, 2], clip_seconds=[0.5], warmup=1, iterations=2, min_iterations=1, max_cell_seconds=None
    )
    section["train_throughput"]["enabled"] = False
    return section


def test_benchmark_with_wave_runners_wer_and_cells(stage, tmp_path):
    root, path, _, _ = stage
    section = _bench_section(cpu_runners=["openvino_fp32", "openvino_wave_fp32"])
    section["wer"].update(manifest_dir=str(root / "data"), num_workers=0)
    report = bench_task.run(
        section,
        model_path=str(path),
        exports=str(root / "exports" / "m"),
        out_dir=tmp_path / "out",
        log=lambda *_: None,
    )
    assert report["wer"]["cpu/openvino_wave_fp32"] == report["wer"]["cpu/openvino_fp32"]
    c = report["cells"]["cpu/openvino_wave_fp32/bs2/0.5s"]
    assert c["iterations"] == 2 and 0 < c["data_p50_ms"] < c["e2e_p50_ms"] and c["net_p50_ms"] > 0


def test_benchmark_preset_exports_the_wave_graph(tmp_path):
    section = _bench_section(cpu_runners=["openvino_wave_bf16", "openvino_wave_fp32"])
    section["grid"].update(batch_sizes=[1])
    report = bench_task.run(
        section, model_path=None, exports=None, out_dir=tmp_path / "out", preset="quartznet:tiny", log=lambda *_: None
    )
    assert "cpu/openvino_wave_fp32/bs1/0.5s" in report["cells"]
    assert "cpu/openvino_wave_bf16/bs1/0.5s" in report["cells"] or "cpu/openvino_wave_bf16" in report["skipped"]


def test_transcribe_with_openvino_wave_matches_torch(stage, monkeypatch):
    root, path, _, _ = stage
    monkeypatch.chdir(root)  # --exports defaults to exports/<model folder name>
    files = [str(root / "data" / "audio" / f"u{i}.flac") for i in range(len(DURATIONS))]
    want = transcribe_task.main(["--model", str(path), *files])
    assert transcribe_task.main(["--model", str(path), "--backend", "openvino_wave", *files]) == want
