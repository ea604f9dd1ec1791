"""The train stage end to end: Ray Train (local mode, 1 and 2 workers), outputs, report, MLflow run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from asr_core.models.artifact import load_model
from asr_core.testing import make_corpus
from asr_core.train.checkpoint import list_checkpoints, load_checkpoint
from tasks.train_log import read_curve
from tests import REPO
from tests.support import tiny_train_params


def _params(tmp_path: Path, corpus: Path, ray: dict, steps: int = 4, **loop) -> Path:
    return tiny_train_params(tmp_path, corpus, "tiny_test", ray, steps, **loop)


def _mlflow_run(run_name: str = "train"):
    from mlflow.tracking import MlflowClient

    from tasks import tracking

    client = MlflowClient(tracking.tracking_uri())
    exp = client.get_experiment_by_name(tracking.EXPERIMENT)
    runs = client.search_runs(
        [exp.experiment_id],
        f"tags.stage = '{run_name}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return client, runs[0]


def _stage(tmp_path, params, *extra):
    from tasks import train as stage

    out, report = tmp_path / "models", tmp_path / "reports" / "train.json"
    result = stage.main(["--params", str(params), "--out", str(out), "--report", str(report), *extra])
    return out / "tiny_test", json.loads(report.read_text()), result


@pytest.mark.parametrize(
    "profile", sorted(p.name for p in (REPO / "params" / "profiles").glob("*.yaml")) + ["../train.yaml"]
)
def test_committed_profiles_pass_the_stages_checks(profile):
    """Every committed profile (and params/train.yaml) is a train section the stage accepts: known keys,
    a typed recipe config for its family and head, a loop and a schedule that fit."""
    from tasks.train import check_section

    section = yaml.safe_load((REPO / "params" / "profiles" / profile).read_text())["train"]
    checked = check_section(section)
    loop = checked["loop"]
    assert checked["name"] != "model" and (loop.get("max_steps", 0) > 0 or loop.get("max_epochs"))


def test_train_stage_in_process_writes_model_checkpoints_report_and_mlflow(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", splits=(("train", 5), ("dev", 3)), missing=1)  # 2 batches an epoch
    params = _params(tmp_path, corpus, {"num_workers": 0, "torch_threads": 1})
    model_dir, report, _ = _stage(tmp_path, params)

    assert report["steps"] == 4 and report["world_size"] == 1 and report["skipped_utterances"] >= 1
    assert report["best_dev_wer"] is not None and report["final_dev_cer"] is not None
    assert report["audio_s_per_s"] > 0 and report["sequences_per_s"] > 0 and report["stopped_by"] == "max_steps"
    assert [s for s, _ in list_checkpoints(model_dir / "checkpoints")] == [2, 4]
    _, _, vocab = load_model(model_dir / "model.pt")
    assert vocab.num_outputs == 29 and load_checkpoint(model_dir / "model.pt")["step"] in (2, 4)
    assert (model_dir / "final.pt").is_file()
    # the curves dvc plots draws, beside the report
    reports = tmp_path / "reports"
    assert [r["step"] for r in read_curve(reports / "train_curve.csv")] == ["1", "2", "3", "4"]
    assert [r["step"] for r in read_curve(reports / "dev_curve.csv")] == ["2", "4"]

    client, run = _mlflow_run()
    assert run.info.status == "FINISHED" and run.data.params["train.model.preset"] == "tiny"
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 4
    assert [m.step for m in client.get_metric_history(run.info.run_id, "dev_wer")] == [2, 4]
    assert "best_dev_wer" in run.data.metrics
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model", "checkpoints", "train_summary.json"} <= arts
    assert {a.path for a in client.list_artifacts(run.info.run_id, "model")} == {"model/model.pt", "model/final.pt"}

    # the same command again resumes from the last checkpoint: nothing left to train
    _, again, _ = _stage(tmp_path, params)
    assert again["resumed_from"] == 4 and again["steps"] == 4
    # other params are refused until --fresh
    changed = yaml.safe_load(params.read_text())
    changed["train"]["optim"]["lr"] = 0.02
    params.write_text(yaml.safe_dump(changed))
    with pytest.raises(ValueError, match=r"other params \(differing: \['recipe'\]\).*--fresh"):
        _stage(tmp_path, params)
    _, fresh, _ = _stage(tmp_path, params, "--fresh")
    assert fresh["resumed_from"] is None
