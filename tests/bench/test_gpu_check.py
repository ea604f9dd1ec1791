"""``bench/gpu_check.py --device cpu --tiny``: every step of the GPU check at tiny size on the CPU.

The check runs in a subprocess in which the packages the GPU machine lacks (prefect, mlflow, dvc,
ray, jiwer, soundfile, DALI) cannot be imported, so a module-level import of one of them anywhere
on the check's path fails here rather than on the lent GPU.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu_check.py"
ABSENT = ("prefect", "mlflow", "dvc", "ray", "jiwer", "soundfile", "nvidia.dali")
STEPS = {"1", "2", "3", "4", "5", "6", "dali"}

RUN_WITHOUT = """
import importlib.abc, runpy, sys

ABSENT = {absent!r}


class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == a or name.startswith(a + ".") for a in ABSENT):
            raise ModuleNotFoundError(f"No module named {{name!r}} (not on the GPU machine)", name=name)
        return None


sys.meta_path.insert(0, Absent())
sys.argv = [{script!r}, *sys.argv[1:]]
runpy.run_path({script!r}, run_name="__main__")
"""


def run_check(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    code = RUN_WITHOUT.format(absent=ABSENT, script=str(SCRIPT))
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    proc = run_check("--device", "cpu", "--tiny", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc, json.loads((out / "gpu_check.json").read_text()), (out / "gpu_check.md").read_text(), out


def rows_of(report, step):
    return {r["name"]: r for r in report["rows"] if r["step"] == step}


def test_every_step_reports_figures_or_a_reason_and_nothing_failed(tiny):
    proc, report, md, out = tiny
    assert report["mode"]["device"] == "cpu" and report["mode"]["tiny"] is True
    assert {r["step"] for r in report["rows"]} == STEPS
    for r in report["rows"]:
        assert r["status"] in ("pass", "fail", "ok", "error", "skipped"), r
        if r["status"] == "skipped":
            assert r["reason"], r
        else:
            assert r["figures"] and r["summary"], r
        assert r["elapsed_s"] is not None, r
    assert report["counts"]["fail"] == report["counts"]["error"] == 0, [
        (r["name"], r["error"] or r["summary"]) for r in report["rows"] if r["status"] in ("fail", "error")
    ]
    assert not report["failed"]
    assert report["environment"]["torch"] and report["environment"]["device"] == "cpu"
    assert "gpu check:" in proc.stdout
    for step in ("1", "2", "3", "4", "5", "6"):
        assert f"## {step}. " in md
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.json", "gpu_check.md"]  # no temporary left


def test_engine_steps_train_with_finite_losses_and_resume_exactly(tiny):
    report = tiny[1]
    one = rows_of(report, "1")
    for name in ("fp32", "bf16"):
        f = one[name]["figures"]
        assert one[name]["status"] == "pass" and f["losses_finite"] and f["bad_batches"] == 0
        assert all(math.isfinite(x) for x in f["losses"]) and f["sequences_per_s"] > 0 and f["peak_mem_mb"]
    assert one["tf32"]["status"] == one["fp16"]["status"] == "skipped"
    resume = one["kill after N/2 steps, resume, compare"]
    f = resume["figures"]
    assert resume["status"] == "pass" and f["exact"] is True and f["max_abs_diff"] == 0.0
    assert f["resumed_from"] == f["killed_at"] > 0 and f["trained"] and f["deterministic_algorithms"]
    for name, r in {**rows_of(report, "5"), **rows_of(report, "6")}.items():
        if r["status"] != "skipped" and "losses" in r["figures"]:
            assert r["figures"]["losses_finite"], name
    assert any(r["status"] == "pass" for r in rows_of(report, "5").values())  # the transducer trained
    assert rows_of(report, "6")["QuartzNet tiny bf16"]["figures"]["sequences_per_s"] > 0


def test_distributed_step_ran_with_gloo(tiny):
    two = rows_of(tiny[1], "2")
    f = two["engine under torch.distributed"]["figures"]
    assert two["engine under torch.distributed"]["status"] == "pass"
    assert f["backend"] == "gloo" and f["world_size"] == 1 and f["init_method"] == "env://"
    assert f["path"].startswith("unwrapped")
    assert two["DDP wrapper, world 1"]["status"] == "pass" and two["DDP wrapper, world 1"]["figures"]["all_reduce_ok"]


def test_benchmark_cells_and_hourglass(tiny):
    report = tiny[1]
    three = rows_of(report, "3")
    for key in ("bs1x2s", "bs4x4s"):
        fp32 = three[f"torch_fp32 {key}"]
        assert fp32["status"] == "pass" and fp32["figures"]["max_abs_logprob_diff"] == 0.0
        assert fp32["figures"]["token_agreement"] == 1.0 and fp32["figures"]["e2e_p99_ms"] > 0
        bf16 = three[f"torch_bf16 {key}"]["figures"]
        assert 0.0 <= bf16["token_agreement"] <= 1.0 and bf16["max_abs_logprob_diff"] >= 0.0
    for name in ("torch_tf32", "torch_fp16", "torch_fp16_graphs", "torch_bf16_graphs"):
        assert three[name]["status"] == "skipped" and "needs CUDA" in three[name]["reason"]
    four = rows_of(report, "4")
    assert four["plain Transformer"]["figures"]["step_s"] > 0 and four["factor 2"]["figures"]["speedup"] > 0
    assert rows_of(report, "dali")["DALI GPU feature pipeline"]["status"] == "skipped"


def test_usage_errors_exit_2_before_any_work():
    proc = run_check("--steps", "1,9", timeout=60)
    assert proc.returncode == 2 and "--steps" in proc.stderr


def test_agreement_helpers(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    from gpu_check.harness import agreement, edit_distance, words

    assert edit_distance([1, 2, 3], [1, 3]) == 1 and edit_distance([], [4, 5]) == 2
    assert words([0, 1, 2, 0, 0, 3]) == [(1, 2), (3,)]
    a = agreement([[1, 2, 0, 3]], [[1, 2, 0, 4]])
    assert a["token_agreement"] == 0.75 and a["wer_vs_cpu_fp32"] == 0.5 and not a["transcripts_identical"]
