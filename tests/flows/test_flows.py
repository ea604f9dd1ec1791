"""Prefect flows over the DVC stages, under ``prefect_test_harness``, in a temp copy of the repo
with tiny params (a 36-utterance corpus, a few training steps). Never against the repo itself."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from tests import REPO
from tests.flows.support import _BASE, _git, _logs, _runs, _set, _task_states, copy_repo, trained_repo

# Whole DVC pipelines in subprocesses: minutes on a busy 2-core machine, past the suite's 600 s default.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def _status(repo: Path) -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout


def _apply(repo: Path, exp: str) -> None:
    """``dvc exp apply``: what a user runs to bring a flow run's outputs into the workspace."""
    r = subprocess.run(["dvc", "exp", "apply", exp], cwd=repo, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


SKIPPED = ("unchanged", "run-cache")  # a run workspace restores the data stages from DVC's run-cache


def test_train_quartznet_end_to_end_then_skip_and_override(repo, tmp_path):
    from flows.train_quartznet import train_quartznet
    from tasks.dvc_stage import lock_outs, stage_plan

    before = _status(repo)
    state = train_quartznet(return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()
    assert _status(repo) == before, "the flow run wrote to the working tree"
    ws = Path(summary["workspace"])  # kept (flows.keep_workspaces), its outputs linked from the DVC cache
    assert (ws / "models" / "quartznet_tiny" / "model.pt").is_file()
    stages = [s for s in summary["stages"] if summary["stages"][s]["status"] != "not available"]
    planned, missing = stage_plan(
        repo, ["download", "prepare", "tokenizer", "train", "evaluate", "export", "benchmark"]
    )
    assert stages == planned and {"download", "train", "evaluate"} <= set(stages)
    assert [s for s in summary["stages"] if summary["stages"][s]["status"] == "not available"] == missing
    for s in stages:
        assert summary["stages"][s]["status"] in (SKIPPED if s in ("download", "prepare", "tokenizer") else ("ran",))
    exps = subprocess.run(["dvc", "exp", "list", "--name-only"], cwd=repo, capture_output=True, text=True).stdout
    assert summary["dvc_experiment"] in exps.split()
    _apply(repo, summary["dvc_experiment"])
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert set(stages) <= set(lock["stages"])
    assert (repo / "models" / "quartznet_tiny" / "model.pt").is_file()

    # MLflow: a parent tagged with the flow run, the commit and the data hashes; one child per stage.
    runs = _runs()
    parent = next(r for r in runs if r.info.run_id == summary["mlflow_parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.info.run_name == "train-quartznet quartznet_tiny"
    assert parent.data.tags["prefect.flow_run_id"] == str(state.state_details.flow_run_id)
    assert parent.data.tags["git_commit"] == _git(["rev-parse", "HEAD"], repo)
    assert parent.data.tags["dvc.exp"] == summary["dvc_experiment"]
    outs = lock_outs(repo)
    assert parent.data.tags["dvc.md5.prepare.data/prepared"] == outs["prepare:data/prepared"]
    children = {r.data.tags["stage"]: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert set(stages) <= set(children)
    assert children["train"].data.metrics  # the stage's own run, nested by ASR_PARENT_RUN_ID
    assert children["train"].data.tags["dvc.status"] == "ran"
    if "export" in stages:
        assert summary["registry"]["registered"] and summary["registry"]["promoted"]
    else:
        assert summary["registry"]["registered"] is False
    assert (
        subprocess.run(["dvc", "status"], cwd=repo, capture_output=True, text=True)
        .stdout.strip()
        .endswith("Data and pipelines are up to date.")
    )
    _git(["add", "-A"], repo)
    _git(["commit", "-q", "-m", "trained"], repo)
    trained = copy_repo(repo, tmp_path / "trained")  # for the server integration test

    # Again with one override: only evaluate (and what depends on it) runs; params file untouched.
    committed = (repo / "params" / "evaluate.yaml").read_text()
    mode = (repo / "params" / "evaluate.yaml").stat().st_mode
    before = _status(repo)
    state2 = train_quartznet(overrides={"evaluate.max_utterances": 2}, return_state=True)
    assert state2.is_completed(), state2.message
    s2 = state2.result()
    assert all(s2["stages"][s]["status"] in SKIPPED for s in ("download", "prepare", "tokenizer", "train"))
    assert s2["stages"]["evaluate"]["status"] == "ran"
    states = _task_states(state2.state_details.flow_run_id, {"download": "Skipped", "evaluate": "Completed"})
    assert states.get("download") == "Skipped" and states.get("evaluate") == "Completed", states
    assert _status(repo) == before
    assert (repo / "params" / "evaluate.yaml").read_text() == committed
    assert stat.S_IMODE((repo / "params" / "evaluate.yaml").stat().st_mode) == stat.S_IMODE(mode)
    p2 = next(r for r in _runs() if r.info.run_id == s2["mlflow_parent_run_id"])
    assert p2.data.params["override.evaluate.max_utterances"] == "2"
    kids = [r for r in _runs() if r.data.tags.get("mlflow.parentRunId") == p2.info.run_id]
    assert {r.data.tags["stage"]: r.data.tags.get("dvc.status") for r in kids}["train"] in SKIPPED
    if "export" in stages:  # same ONNX graph: the registered version is reused, not registered again
        assert s2["registry"]["reused"] and s2["registry"]["version"] == summary["registry"]["version"]
    _apply(repo, s2["dvc_experiment"])
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert lock["stages"]["evaluate"]["params"]["params/evaluate.yaml"]["evaluate"]["max_utterances"] == 2
    assert json.loads((repo / "reports" / "evaluate.json").read_text())["test"]["utterances"] == 2
    _BASE.setdefault("trained", trained)


def test_train_jasper_end_to_end_after_a_retried_download(repo, monkeypatch):
    """train-jasper through train/evaluate/export and registration, its download task failing once
    (a transient error) and retried by Prefect."""
    from flows import steps
    from flows.train_jasper import train_jasper
    from tasks.dvc_stage import StageFailed

    _set(repo / "params" / "flows.yaml", "flows", {"download_retry_delay_s": 0})
    real, calls = steps.run_stage, []

    def flaky(stage, **kw):
        calls.append(stage)
        if stage == "download" and calls.count("download") == 1:
            raise StageFailed("download", 1, ["ConnectionError: mirror unreachable (injected)"], [])
        return real(stage, **kw)

    monkeypatch.setattr(steps, "run_stage", flaky)
    state = train_jasper(stages=["download", "train", "evaluate", "export"], return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()
    assert calls.count("download") == 2
    assert {s: summary["stages"][s]["status"] for s in ("download", "train", "evaluate", "export")} == {
        "download": summary["stages"]["download"]["status"],
        "train": "ran",
        "evaluate": "ran",
        "export": "ran",
    }
    logs = _logs(state.state_details.flow_run_id, "Retry")
    assert "mirror unreachable (injected)" in logs and "Retry" in logs, logs[-3000:]
    assert yaml.safe_load((repo / "params" / "train.yaml").read_text())["train"]["model"]["family"] == "quartznet"
    _apply(repo, summary["dvc_experiment"])
    assert (repo / "models" / "jasper_tiny" / "model.pt").is_file()
    reg = summary["registry"]
    assert reg["registered"] and reg["model_name"] == "asr-jasper" and reg["promoted"]
    runs = _runs()
    parent = next(r for r in runs if r.info.run_id == summary["mlflow_parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.params["flow.family"] == "jasper"
    downloads = [
        r.info.status
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id and r.data.tags["stage"] == "download"
    ]
    assert sorted(downloads) == ["FAILED", "FINISHED"]  # the failed attempt stays on record


def test_failing_stage_fails_flow_with_its_error(repo):
    from flows.train_quartznet import train_quartznet

    state = train_quartznet(
        overrides={"tokenizer.sentencepiece.model_type": "bogus"},
        stages=["download", "prepare", "tokenizer", "train"],
        return_state=True,
    )
    assert state.is_failed()
    logs = _logs(state.state_details.flow_run_id, "exited with 1")
    assert "DVC stage 'tokenizer' failed" in logs, logs[-3000:]
    assert "ValueError: tokenizer.sentencepiece: tokenizer.model_type must be 'bpe' or 'unigram', got 'bogus'" in logs
    # the failed run's workspace is kept for inspection with its earlier outputs; the user's params
    # untouched; MLflow runs FAILED
    runs = _runs()
    parent = next(r for r in runs if r.data.tags.get("flow") == "train-quartznet")
    ws = Path(parent.data.tags["workspace"])
    assert (ws / "data" / "prepared" / "train.jsonl").is_file()
    lock = yaml.safe_load((ws / "dvc.lock").read_text())
    assert {"download", "prepare"} <= set(lock["stages"]) and "train" not in lock["stages"]
    assert "bogus" not in (repo / "params" / "tokenizer.yaml").read_text()
    assert "bogus" in (ws / "params" / "tokenizer.yaml").read_text()
    assert parent.info.status == "FAILED" and "tokenizer" in parent.data.tags["error"]
    kids = {
        r.data.tags["stage"]: r.info.status for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    assert kids == {"download": "FINISHED", "prepare": "FINISHED", "tokenizer": "FAILED"}


def _onnx(path: Path, fixed_time: bool = False) -> Path:
    """A tiny CTC-shaped graph: features (B, 8, T), feature_lens (B,) -> log_probs (B, T, 5), lens."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(8, 5, 3, padding=1)

        def forward(self, x, x_lens):
            return self.conv(x).transpose(1, 2).log_softmax(-1), x_lens

    axes = {"features": {0: "batch"}, "feature_lens": {0: "batch"}, "log_probs": {0: "batch"}}
    if not fixed_time:
        axes["features"][2] = "time"
        axes["log_probs"][1] = "time"
    torch.onnx.export(
        Net().eval(),
        (torch.randn(2, 8, 20), torch.tensor([20, 11])),
        str(path),
        dynamo=False,
        input_names=["features", "feature_lens"],
        output_names=["log_probs", "log_prob_lens"],
        dynamic_axes=axes,
    )
    return path


def test_registry_candidate_and_champion_by_wer(tmp_path, monkeypatch):
    from tasks import registry, tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    _onnx(tmp_path / "model.onnx")
    evaluation = tmp_path / "evaluate.json"
    results = []
    for i, wer in enumerate((0.5, 0.6, 0.4)):
        graph = _onnx(tmp_path / f"model{i}.onnx")  # three distinct graphs (freshly initialised weights)
        evaluation.write_text(json.dumps({"test": {"wer": wer + 0.1}, "test_unseen_voice": {"wer": wer}}))
        run_id = tracking.start_flow_run("register", tags={"stage": "register"})
        results.append(
            registry.register(
                model_name="asr-test",
                onnx_path=graph,
                evaluation_path=evaluation,
                run_id=run_id,
                tags={"train_name": "tiny"},
            )
        )
    assert [(r["version"], r["promoted"], r["wer_split"], r["reused"]) for r in results] == [
        ("1", True, "test_unseen_voice", False),
        ("2", False, "test_unseen_voice", False),
        ("3", True, "test_unseen_voice", False),
    ]
    # the same graph again (a re-run whose train/export stages were skipped): no new version
    again = registry.register(
        model_name="asr-test",
        onnx_path=tmp_path / "model1.onnx",
        evaluation_path=evaluation,
        run_id=tracking.start_flow_run("register", tags={"stage": "register"}),
    )
    assert (again["version"], again["reused"], again["promoted"]) == ("2", True, False)
    assert len(tracking.client().search_model_versions("name = 'asr-test'")) == 3
    assert tracking.client().get_model_version("asr-test", "2").tags["wer"] == "0.4"
    c = tracking.client()
    assert str(c.get_model_version_by_alias("asr-test", "champion").version) == "3"
    assert str(c.get_model_version_by_alias("asr-test", "candidate").version) == "2"

    import mlflow

    info = mlflow.models.get_model_info("models:/asr-test@champion")
    assert "onnx" in info.flavors
    shapes = {s.name: s.shape for s in info.signature.inputs.inputs + info.signature.outputs.inputs}
    assert shapes == {"features": (-1, 8, -1), "feature_lens": (-1,), "log_probs": (-1, -1, 5), "log_prob_lens": (-1,)}

    with pytest.raises(ValueError, match="only the batch axis is variable"):
        registry.onnx_signature(__import__("onnx").load(str(_onnx(tmp_path / "fixed.onnx", fixed_time=True))), "fixed")
    evaluation.write_text(json.dumps({"dev": {"wer": 0.1}}))
    with pytest.raises(ValueError, match="none of the splits"):
        registry.pick_wer(json.loads(evaluation.read_text()))


def test_flow_params_validated_before_any_stage(repo):
    """A bad override fails the flow run in its first seconds: no workspace, no MLflow run, no stage."""
    from flows.train_quartznet import train_quartznet

    committed = {p.name: p.read_text() for p in (repo / "params").glob("*.yaml")}
    for overrides, msg in [
        ({"train.loop.max_stepz": 5}, "max_stepz"),
        ({"evaluate.max_utterancez": 5}, "max_utterancez"),
        ({"evaluate.num_workers": "many"}, "expected a number"),
        ({"train.optim.schedule.warmup_steps": 10}, "train.loop.max_steps=3"),
    ]:
        state = train_quartznet(overrides=overrides, return_state=True)
        assert state.is_failed() and msg in state.message, (overrides, state.message)
    assert not (repo / ".flows" / "runs").exists() or not any((repo / ".flows" / "runs").iterdir())
    assert not [r for r in _runs() if r.data.tags.get("flow")], "a flow run opened an MLflow run"
    assert {p.name: p.read_text() for p in (repo / "params").glob("*.yaml")} == committed


def test_benchmark_nightly_fails_on_a_regression(tmp_path_factory, tmp_path, monkeypatch, harness):
    from flows.benchmark_nightly import benchmark_nightly
    from tasks import registry, tracking

    repo = copy_repo(trained_repo(tmp_path_factory), tmp_path)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{repo / 'mlruns' / 'mlflow.db'}")
    if registry.current_champion("asr-quartznet")[0] is None:  # (the end-to-end test did not run first)
        from flows.steps import file_md5

        rid = tracking.start_flow_run("register", tags={"stage": "register"})
        onnx = repo / "exports" / "quartznet_tiny" / "model.onnx"
        registry.register(
            model_name="asr-quartznet",
            onnx_path=onnx,
            evaluation_path=repo / "reports" / "evaluate.json",
            run_id=rid,
            tags={"train_name": "quartznet_tiny", "onnx_md5": file_md5(onnx)},
        )
    # An earlier night 10,000x faster than this machine can be (whatever its load): this night must regress.
    c = tracking.client()
    bench = c.search_runs(
        [tracking.experiment_id()],
        "tags.stage = 'benchmark' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
    )
    bench = next(r for r in bench if any(k.endswith("/rtfx") for k in r.data.metrics))
    earlier = tracking.start_flow_run(
        "benchmark",
        experiment="benchmark-nightly",
        tags={k: v for k, v in bench.data.tags.items() if k.startswith(("stage", "bench."))},
    )
    for k, v in bench.data.metrics.items():
        c.log_metric(earlier, k, v * 1e4 if k.endswith("/rtfx") else v)
    tracking.end_flow_run(earlier)

    state = benchmark_nightly(return_state=True)
    assert state.is_failed()
    assert "benchmark regression" in state.message and "asr-quartznet v1" in state.message
    assert "cpu/onnxruntime_fp32/bs1/2s rtfx" in state.message
    nights = c.search_runs([tracking.experiment_id("benchmark-nightly")], "tags.flow = 'benchmark-nightly'")
    assert len(nights) == 1 and nights[0].data.tags["regressed"] == "True"
    assert [a.path for a in c.list_artifacts(nights[0].info.run_id)] == ["benchmark_history.md"]
    stage_runs = c.search_runs(
        [tracking.experiment_id("benchmark-nightly")], f"tags.mlflow.parentRunId = '{nights[0].info.run_id}'"
    )
    assert [r.data.tags["stage"] for r in stage_runs] == ["benchmark"] and stage_runs[0].data.metrics


def test_flow_parameters_to_overrides(tmp_path):
    from flows.params import training_overrides
    from flows.pipeline import effective_overrides

    (tmp_path / "params").mkdir()
    shutil.copy(REPO / "params" / "train.yaml", tmp_path / "params" / "train.yaml")
    shutil.copy(REPO / "params" / "download.yaml", tmp_path / "params" / "download.yaml")
    kw = dict(
        name=None, max_steps=None, ray_workers=None, loader_workers=None, source=None, overrides=None, repo=tmp_path
    )
    committed = yaml.safe_load((tmp_path / "params" / "train.yaml").read_text())["train"]
    # the committed family and preset, nothing else: no override at all (no params file is rewritten)
    same = training_overrides(committed["model"]["family"], preset=None, **kw)
    assert effective_overrides(tmp_path, same) == {}
    jasper = training_overrides("jasper", preset="tiny", **{**kw, "max_steps": 7, "source": "librispeech"})
    assert effective_overrides(tmp_path, jasper) == {
        "train.model.family": "jasper",
        "train.model.overrides": {},
        "train.name": "jasper_tiny",
        "train.loop.max_steps": 7,
        "train.optim.schedule.warmup_steps": 0,  # a 7-step run: the 150-step warm-up shrinks to fit
        "download.source": "librispeech",
        **({} if committed["model"]["preset"] == "tiny" else {"train.model.preset": "tiny"}),
    }
    named = training_overrides("quartznet", preset="5x5", **{**kw, "name": "qn", "overrides": {"train.seed": 9}})
    assert named["train.name"] == "qn" and named["train.model.preset"] == "5x5" and named["train.seed"] == 9
