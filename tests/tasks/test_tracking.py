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
