"""The transducer through the train stage (Ray local mode): loss falls, model.pt loads, resume."""

from __future__ import annotations

import json

from asr_core.models.artifact import load_model
from asr_core.train.checkpoint import list_checkpoints
from tests.support import rnnt_corpus, rnnt_params


def test_train_stage_trains_a_transducer(tmp_path):
    from mlflow.tracking import MlflowClient

    from tasks import tracking
    from tasks import train as stage

    corpus, spm = rnnt_corpus(tmp_path / "corpus")
    params = rnnt_params(tmp_path, corpus, spm)
    out, report_path = tmp_path / "models", tmp_path / "train.json"
    stage.main(["--params", str(params), "--out", str(out), "--report", str(report_path)])
    report = json.loads(report_path.read_text())
    assert report["steps"] == 12 and report["best_dev_wer"] is not None

    client = MlflowClient(tracking.tracking_uri())
    exp = client.get_experiment_by_name(tracking.EXPERIMENT)
    run = client.search_runs(
        [exp.experiment_id], "tags.stage = 'train'", order_by=["attributes.start_time DESC"], max_results=1
    )[0]
    losses = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "train_loss"), key=lambda m: m.step)]
    assert len(losses) == 12 and losses[-1] < 0.7 * losses[0], losses
    assert run.data.params["train.model.family"] == "rnnt"

    model_dir = out / "rnnt_test"
    assert [s for s, _ in list_checkpoints(model_dir / "checkpoints")] == [6, 12]
    model, features, vocab = load_model(model_dir / "model.pt")
    assert model.kind == "transducer" and vocab.num_outputs == 16 and features.cfg.n_mels == 80
    assert vocab.decode(vocab.encode("abc de")) == "abc de"
