import pytest

from tasks import tracking


def _client():
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking.tracking_uri())


def test_stage_run_logs_params_metrics_and_artifacts():
    with tracking.stage_run(
        "unit", {"download": {"source": "synthetic", "synthetic": {"train": 3, "v": [1, 2]}}}
    ) as tr:
        tr.log_metrics({"hours": 1.5, "splits": {"train": {"utterances": 3}}, "note": "skip", "flag": True})
        tracking.log_summary_artifact(tr, {"a": 1}, "summary.json")
        run_id = tr.run_id
    run = _client().get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["download.synthetic.train"] == "3"
    assert run.data.params["download.synthetic.v"] == "[1, 2]"
    assert run.data.metrics == {"hours": 1.5, "splits.train.utterances": 3.0}
    assert run.data.tags["stage"] == "unit"
    assert [a.path for a in _client().list_artifacts(run_id)] == ["summary.json"]


def test_failed_stage_marks_run_failed():
    with pytest.raises(ValueError), tracking.stage_run("broken") as tr:
        run_id = tr.run_id
        raise ValueError("bad field x")
    run = _client().get_run(run_id)
    assert run.info.status == "FAILED"
    assert "bad field x" in run.data.tags["error"]


def test_parent_run_nesting(monkeypatch):
    with tracking.stage_run("parent") as parent:
        pid = parent.run_id
    monkeypatch.setenv("ASR_PARENT_RUN_ID", pid)
    with tracking.stage_run("child") as child:
        cid = child.run_id
    assert _client().get_run(cid).data.tags["mlflow.parentRunId"] == pid


@pytest.mark.slow
def test_dvc_repro_groups_stage_runs_under_one_parent(tmp_path_factory, tmp_path, monkeypatch):
    """Without a flow, the stages of one `dvc repro` nest under one parent run named after the model;
    each child is named by its stage and tagged with its dvc.lock entry."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tasks import tracking
    from tests.flows.support import base_repo, copy_repo

    repo = copy_repo(base_repo(tmp_path_factory), tmp_path)
    uri = f"sqlite:///{tmp_path / 'grouping.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for _ in range(2):
        r = subprocess.run(
            ["dvc", "repro", "--force", "--single-item", "prepare", "tokenizer"],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stdout + r.stderr
    runs = tracking.client().search_runs([tracking.experiment_id()], max_results=100)
    parents = [r for r in runs if "dvc.repro" in r.data.tags]
    assert len(parents) == 2, [(r.info.run_name, r.data.tags) for r in runs]
    for p in parents:
        assert p.info.run_name == "dvc repro quartznet_tiny" and p.info.status == "FINISHED"
        kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == p.info.run_id]
        assert sorted(k.data.tags["dvc.stage"] for k in kids) == ["prepare", "tokenizer"]
    assert len(runs) == 6
