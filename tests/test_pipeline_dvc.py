"""`dvc repro` of the whole pipeline in a temp copy of the repo, on a tiny corpus and a few steps; then a
second model listed in params/models.yaml, built beside the default by its own stages."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from asr_core.io import read_jsonl
from tests import REPO

pytestmark = pytest.mark.slow


def _copy_repo(dst: Path) -> None:
    files = (
        subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)


def _set(path: Path, key: str, updates: dict) -> None:
    data = yaml.safe_load(path.read_text())
    data[key].update(updates)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _dvc(args, cwd, env):
    r = subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, f"dvc {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


def test_dvc_repro_pipeline_then_nothing_to_do(tmp_path, ov_bf16, monkeypatch):
    work = tmp_path / "repo"
    _copy_repo(work)
    dl = work / "params" / "download.yaml"
    data = yaml.safe_load(dl.read_text())
    data["download"]["synthetic"].update({"train": 24, "dev": 4, "test": 4, "test_unseen_voice": 4})
    dl.write_text(yaml.safe_dump(data, sort_keys=False))
    _set(work / "params" / "tokenizer.yaml", "tokenizer", {"sentencepiece": {"vocab_size": 40, "model_type": "bpe"}})
    tr = work / "params" / "train.yaml"
    data = yaml.safe_load(tr.read_text())
    data["train"]["loop"].update(
        {"max_steps": 4, "max_minutes": None, "eval_every": 4, "ckpt_every": 2, "log_every": 1}
    )
    data["train"]["data"].update({"num_workers": 0, "eval_max_utterances": 4, "max_batch_seconds": 30})
    data["train"]["ray"].update({"num_workers": 0})
    data["train"]["optim"]["schedule"].update({"warmup_steps": 1})
    tr.write_text(yaml.safe_dump(data, sort_keys=False))
    _set(work / "params" / "evaluate.yaml", "evaluate", {"num_workers": 0})
    ev = work / "params" / "evaluate.yaml"  # beam search: a one-point grid on 2 dev utterances
    data = yaml.safe_load(ev.read_text())
    data["evaluate"]["lm"].update({"beam_size": 8, "tune_utterances": 2, "lm_weights": [1.0], "word_scores": [0.0]})
    ev.write_text(yaml.safe_dump(data, sort_keys=False))
    # export: one reduced-precision variant; a 4-step model's WER means nothing, so no WER tolerance there
    _set(
        work / "params" / "export.yaml",
        "export",
        {"num_workers": 0, "reduced_precision": ["openvino_bf16"], "wer_tolerance": 1.0},
    )
    bm = work / "params" / "benchmark.yaml"  # a 2 x 1 grid, 2 timed iterations, 1 training step
    data = yaml.safe_load(bm.read_text())
    data["benchmark"].update(
        {"cpu_runners": ["torch_fp32", "onnxruntime_fp32", "openvino_bf16"], "cuda_runners": ["torch_fp16"]}
    )
    data["benchmark"]["grid"].update(
        {
            "batch_sizes": [1, 2],
            "clip_seconds": [1.0],
            "warmup": 1,
            "iterations": 2,
            "min_iterations": 1,
            "max_cell_seconds": None,
        }
    )
    data["benchmark"]["wer"].update({"num_workers": 0})
    data["benchmark"]["train_throughput"].update(
        {"precisions": ["fp32"], "batch_size": 1, "clip_seconds": 1.0, "warmup": 0, "steps": 1}
    )
    bm.write_text(yaml.safe_dump(data, sort_keys=False))

    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _dvc(["repro"], work, env)

    rows = {
        split: list(read_jsonl(work / "data" / "prepared" / f"{split}.jsonl"))
        for split in ("train", "dev", "test", "test_unseen_voice")
    }
    assert [len(r) for r in rows.values()] == [24, 4, 4, 4]
    first = rows["train"][0]
    assert (work / "data" / "prepared" / first["audio_filepath"]).is_file()
    assert (work / "data" / "tokenizer" / "spm.model").is_file()
    assert json.loads((work / "data" / "tokenizer" / "chars.json").read_text())["blank"] == 28
    lock = yaml.safe_load((work / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"download", "prepare", "tokenizer", "lm", "train", "evaluate", "export", "benchmark"}
    assert (work / "data" / "lm" / "lm.arpa").read_text().startswith("\\data\\")
    assert (work / "data" / "lm" / "lexicon.txt").is_file()
    assert json.loads((work / "reports" / "lm.json").read_text())["sentences"] == 24
    assert (work / "models" / "quartznet_tiny" / "model.pt").is_file()
    evaluation = json.loads((work / "reports" / "evaluate.json").read_text())
    assert {"dev", "test", "test_unseen_voice"} <= set(evaluation)
    assert evaluation["test"]["utterances"] == 4
    assert (work / "reports" / "eval" / "test_unseen_voice.tsv").is_file()
    assert evaluation["beam"]["tune_split"] == "dev" and evaluation["beam"]["lm_weight"] == 1.0
    assert {"wer", "cer"} <= set(evaluation["test_unseen_voice"]["beam"])
    assert (work / "reports" / "eval" / "test_unseen_voice.beam.tsv").is_file()
    assert json.loads((work / "reports" / "download.json").read_text())["utterances"] == 36
    exported = json.loads((work / "reports" / "export.json").read_text())
    assert exported["passed"] and exported["utterances"] == 4
    assert exported["backends"]["onnxruntime_fp32"]["max_abs_diff"] <= 1e-3
    for rel in ("model.onnx", "openvino/model.xml", "openvino/model.bin", "export.json"):
        assert (work / "exports" / "quartznet_tiny" / rel).is_file(), rel
    bench = json.loads((work / "reports" / "benchmark.json").read_text())
    assert len(bench["cells"]) == (3 if ov_bf16 else 2) * 2  # openvino_bf16 is skipped on a CPU without bf16
    assert bench["wer"]["cpu/onnxruntime_fp32"] == bench["wer"]["cpu/torch_fp32"]
    if ov_bf16:
        assert bench["cells"]["cpu/openvino_bf16/bs2/1s"]["rtfx"] > 0
    else:
        assert "no bf16" in bench["skipped"]["cpu/openvino_bf16"]
    assert bench["machine"]["cpu_cores"] >= 1
    for name in ("cells.csv", "latency.png", "rtfx.png", "report.md", "machine.json"):
        assert (work / "reports" / "benchmark" / name).is_file(), name

    # without a flow, the stages of one `dvc repro` nest under one parent run named after the model,
    # each child named by its stage and tagged with its dvc.lock entry
    from tasks import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
    runs = tracking.client().search_runs([tracking.experiment_id()], max_results=100)
    parents = [r for r in runs if "dvc.repro" in r.data.tags]
    assert [(p.info.run_name, p.info.status) for p in parents] == [("dvc repro quartznet_tiny", "FINISHED")]
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(k.data.tags["dvc.stage"] for k in kids) == sorted(lock["stages"])
    assert len(runs) == len(kids) + 1

    again = _dvc(["repro"], work, env)
    assert "Running stage" not in again, again
    assert "up to date" in _dvc(["status"], work, env)
    # nothing ran, so no run was made
    assert len(tracking.client().search_runs([tracking.experiment_id()], max_results=100)) == len(runs)

    # A model listed in params/models.yaml gets its own stages and outputs beside the default's; `dvc metrics
    # show` and `dvc plots show` compare them, and the default's stages do not depend on its params.
    train = yaml.safe_load(tr.read_text())["train"]
    jasper = {**train, "name": "ignored", "model": {"family": "jasper", "preset": "tiny", "overrides": {}}}
    (work / "params" / "models").mkdir()
    (work / "params" / "models" / "jasper_small.yaml").write_text(yaml.safe_dump({"train": jasper}))
    (work / "params" / "models.yaml").write_text(
        yaml.safe_dump({"models": {"jasper_small": {"params": "params/models/jasper_small.yaml"}}})
    )
    stages = _dvc(["stage", "list"], work, env)
    assert {"train_model@jasper_small", "evaluate_model@jasper_small"} <= {ln.split()[0] for ln in stages.splitlines()}
    deps = subprocess.run([sys.executable, "-m", "tasks.stage_deps"], cwd=work, env=env, capture_output=True, text=True)
    assert deps.returncode == 0, deps.stdout + deps.stderr  # the per-model stages' deps cover their imports too
    listed = _dvc(["repro", "evaluate_model@jasper_small"], work, env)
    assert "Running stage 'train_model@jasper_small'" in listed and "Running stage 'train':" not in listed, listed
    assert (work / "models" / "jasper_small" / "model.pt").is_file()
    assert json.loads((work / "reports" / "jasper_small" / "train.json").read_text())["steps"] == 4
    shown = _dvc(["metrics", "show", "--json"], work, env)
    assert "reports/evaluate.json" in shown and "reports/jasper_small/evaluate.json" in shown
    plots = _dvc(["plots", "show", "--json"], work, env)
    for f in ("reports/train_curve.csv", "reports/dev_curve.csv", "reports/jasper_small/dev_curve.csv"):
        assert f in plots, f"{f} missing from dvc plots show: {plots[:2000]}"
    assert "up to date" in _dvc(["status", "train"], work, env)
