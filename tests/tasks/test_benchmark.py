"""Benchmark stage: grid cells, percentiles, skipped CUDA runners, outputs and MLflow artifacts."""

import csv
import json
import mmap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from asr_core.bench.grid import GridConfig, cell_id, make_clips
from asr_core.bench.measure import PeakMemory, latency_stats, machine_facts
from asr_core.bench.report import parse_cell
from asr_core.bench.train_throughput import train_throughput
from asr_core.export import export_onnx, export_openvino
from asr_core.features import FilterbankConfig
from asr_core.io import write_jsonl
from asr_core.models import build_model, model_config
from asr_core.models.artifact import save_model
from asr_core.testing import write_audio
from asr_core.text import CharVocab
from tasks import benchmark as bench_task

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_latency_stats_and_peak_memory():
    s = latency_stats([0.001, 0.002, 0.003, 0.004, 0.010])
    assert s["mean"] == pytest.approx(4.0) and s["p50"] == pytest.approx(3.0)
    assert s["p99"] == pytest.approx(np.percentile([1, 2, 3, 4, 10], 99))
    assert s["p50"] <= s["p90"] <= s["p95"] <= s["p99"]
    with pytest.raises(ValueError):
        latency_stats([])
    with PeakMemory("cpu") as small:
        pass
    with PeakMemory("cpu") as big:
        # 40 MiB of fresh pages: an anonymous mapping (a malloc could reuse freed, resident heap)
        buf = mmap.mmap(-1, 40 * 2**20)
        for off in range(0, len(buf), 4096):
            buf[off] = 1
        buf.close()
    assert big.mb > 0 and small.mb > 0
    if big.kind == "process_peak_rss":  # the peak was reset on entry: the 40 MiB show
        assert big.mb - small.mb > 30
    else:
        assert big.kind == "process_lifetime_peak_rss"
    facts = machine_facts()
    assert facts["cpu_cores"] >= 1 and facts["versions"]["torch"] and "gpu" in facts


def test_peak_memory_says_lifetime_peak_where_the_kernel_ignores_the_reset(monkeypatch):
    # A kernel that accepts the clear_refs write but keeps the old peak must not be read as a reset.
    from asr_core.bench import measure

    fields = {"VmHWM": 2509.0, "VmRSS": 900.0}
    monkeypatch.setattr(measure, "_proc_status_mb", lambda field: fields[field])
    with PeakMemory("cpu") as peak:
        pass
    assert peak.kind == "process_lifetime_peak_rss" and peak.mb == 2509.0


def test_grid_config_and_cells(tmp_path):
    with pytest.raises(ValueError):
        GridConfig(batch_sizes=(0,))
    with pytest.raises(ValueError):
        GridConfig(iterations=2, min_iterations=3)
    key = cell_id("cpu", "openvino_bf16", 16, 16.7)
    assert key == "cpu/openvino_bf16/bs16/16.7s" and parse_cell(key) == ("cpu", "openvino_bf16", 16, 16.7)
    src = [np.full(8000, 0.1, dtype=np.float32), np.full(3000, -0.1, dtype=np.float32)]
    paths = make_clips(tmp_path, 2.0, 3, sources=src)
    import soundfile as sf

    x, sr = sf.read(paths[0])
    assert sr == 16000 and len(x) == 32000 and len(paths) == 3


def test_train_throughput_counts_sequences():
    model = build_model("quartznet", "tiny", 29, sub_blocks=1)
    r = train_throughput(model, batch_size=2, clip_seconds=1.0, precision="bf16", warmup=0, steps=1)
    assert r["sequences_per_s"] > 0 and r["audio_s_per_s"] == pytest.approx(r["sequences_per_s"] * 1.0, rel=0.01)
    assert r["audio_s_per_s"] == pytest.approx(2 * 1.0 / (r["step_ms"]["p50"] / 1000), rel=0.01)
    with pytest.raises(ValueError, match="CUDA"):
        train_throughput(model, batch_size=1, clip_seconds=1.0, precision="fp16")


@pytest.fixture(scope="module")
def setup(ov_bf16, tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    vocab = CharVocab()
    cfg = model_config("quartznet", "tiny", sub_blocks=1)
    model = build_model("quartznet", "tiny", vocab.num_outputs, sub_blocks=1)
    path = save_model(
        root / "model.pt",
        kind="ctc",
        frontend="filterbank",
        family="quartznet",
        model_config=cfg.to_dict(),
        num_outputs=vocab.num_outputs,
        features=FilterbankConfig().to_dict(),
        vocab=vocab.to_dict(),
        state_dict=model.state_dict(),
        step=0,
    )
    export_onnx(model, root / "exports" / "model.onnx", in_features=64)
    export_openvino(root / "exports" / "model.onnx", root / "exports" / "openvino")
    rows = []
    for i, d in enumerate((0.7, 1.3, 0.9)):
        write_audio(root / "data" / "audio" / f"u{i}.flac", d, 16000, seed=i)
        rows.append({"audio_filepath": f"audio/u{i}.flac", "duration": d, "text": "a cat", "utt_id": f"u{i}"})
    write_jsonl(root / "data" / "test.jsonl", rows)
    ov = "openvino_bf16" if ov_bf16 else "openvino_fp32"  # the CPU's fastest OpenVINO runner
    params = yaml.safe_load(Path("params/benchmark.yaml").read_text())
    section = params["benchmark"]
    section.update(
        cpu_runners=["torch_fp32", "onnxruntime_fp32", ov],
        cuda_runners=["torch_fp16", "torch_fp16_graphs"],
        audio_manifest=str(root / "data" / "test.jsonl"),
    )
    section["grid"].update(
        batch_sizes=[1, 2], clip_seconds=[0.5, 1.0], warmup=1, iterations=3, min_iterations=2, max_cell_seconds=None
    )
    section["wer"].update(manifest_dir=str(root / "data"), num_workers=0)
    section["train_throughput"].update(batch_size=1, clip_seconds=0.5, steps=1, precisions=["fp32"])
    return root, path, params, ov


def test_benchmark_stage_outputs_and_mlflow_artifacts(setup, tmp_path):
    root, path, params, ov = setup
    (tmp_path / "benchmark.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "bench"
    report = bench_task.main(
        [
            "--params",
            str(tmp_path / "benchmark.yaml"),
            "--model",
            str(path),
            "--exports",
            str(root / "exports"),
            "--out",
            str(out),
            "--report",
            str(tmp_path / "benchmark.json"),
        ]
    )
    assert set(report["wer"]) == {"cpu/torch_fp32", "cpu/onnxruntime_fp32", f"cpu/{ov}"}
    assert report["wer"]["cpu/onnxruntime_fp32"] == report["wer"]["cpu/torch_fp32"]
    assert len(report["cells"]) == 3 * 2 * 2
    c = report["cells"][f"cpu/{ov}/bs2/1s"]
    assert c["iterations"] == 3 and c["audio_seconds"] == 2.0
    assert c["rtfx"] == pytest.approx(2.0 / (c["e2e_p50_ms"] / 1000), rel=0.01)
    assert 0 < c["data_p50_ms"] < c["e2e_p50_ms"] and c["net_p50_ms"] < c["e2e_p50_ms"]
    assert c["e2e_p50_ms"] <= c["e2e_p99_ms"] and c["peak_mem_mb"] > 0
    assert report["train_throughput"]["cpu/fp32"]["sequences_per_s"] > 0
    if not torch.cuda.is_available():
        assert report["skipped"]["cuda/torch_fp16"] == "skipped: no CUDA"
        assert report["skipped"]["cuda/torch_fp16_graphs"] == "skipped: no CUDA"
    for name in ("cells.csv", "latency.png", "rtfx.png", "report.md", "machine.json"):
        assert (out / name).is_file(), name
    assert (out / "latency.png").read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader((out / "cells.csv").read_text().splitlines()))
    assert len(rows) == 12 and float(rows[0]["e2e_p95_ms"]) > 0
    md = (out / "report.md").read_text()
    assert "| batch | clip | best runner |" in md and "skipped: no CUDA" in md
    saved = json.loads((tmp_path / "benchmark.json").read_text())
    assert saved["machine"]["cpu_model"] and saved["mlflow_run_id"] == report["mlflow_run_id"]

    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    run = client.get_run(report["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["stage"] == "benchmark"
    assert run.data.metrics[f"cpu/{ov}/bs2/1s/rtfx"] == pytest.approx(c["rtfx"])
    assert run.data.metrics["cpu/torch_fp32/wer"] == pytest.approx(report["wer"]["cpu/torch_fp32"])
    names = {a.path for a in client.list_artifacts(run.info.run_id, "benchmark")}
    assert {"benchmark/report.md", "benchmark/latency.png", "benchmark/rtfx.png", "benchmark/cells.csv"} <= names


def test_benchmark_errors_name_the_problem(setup, tmp_path):
    root, path, params, _ = setup
    with pytest.raises(ValueError, match="colour"):
        bench_task.run({**params["benchmark"], "colour": 1}, model_path=str(path), exports=None, out_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="export"):
        bench_task.run(params["benchmark"], model_path=str(path), exports=str(tmp_path / "no"), out_dir=tmp_path)
    with pytest.raises(ValueError, match="devices"):
        bench_task.run(
            {**params["benchmark"], "devices": ["tpu"]}, model_path=str(path), exports=None, out_dir=tmp_path
        )


def test_benchmark_process_sets_the_openmp_spin_before_torch_loads():
    """tasks/threads.py: GOMP_SPINCOUNT set before torch is imported (libgomp reads it at load); a
    user's GOMP_SPINCOUNT or OMP_WAIT_POLICY is kept."""
    import os
    import subprocess
    import sys

    code = (
        "import tasks.benchmark, os, sys; "
        "print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}

    def run(**extra):
        out = subprocess.run(
            [sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True, check=True
        )
        return out.stdout.split()

    assert run() == ["30000", "None", "False"]
    assert run(GOMP_SPINCOUNT="1000")[0] == "1000"
    assert run(OMP_WAIT_POLICY="PASSIVE")[:2] == ["None", "PASSIVE"]


def test_clip_loader_feature_threads_give_the_same_features_and_restore_torch(tmp_path):
    import torch

    from asr_core.bench.grid import ClipLoader, make_clips
    from asr_core.features import FilterbankFeatures

    paths = make_clips(tmp_path, 2.0, 2)
    before = torch.get_num_threads()
    one = ClipLoader(paths, FilterbankFeatures(), threads=1)(2)
    assert torch.get_num_threads() == before
    default = ClipLoader(paths, FilterbankFeatures())(2)
    torch.testing.assert_close(one[0], default[0], atol=1e-5, rtol=0)
    assert one[1].tolist() == default[1].tolist()
