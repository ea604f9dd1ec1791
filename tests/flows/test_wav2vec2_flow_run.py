"""The ``pretrain-wav2vec2`` then ``finetune-wav2vec2`` flows end to end under ``prefect_test_harness``, in a
temp copy of the repo (tests/flows/test_flows.py's fixtures, a 36-utterance corpus): pre-training through the train
stage, then fine-tuning from its ``model.pt`` through train -> evaluate -> export (the parity gate) and the
registry; the profiles applied for each run only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from tests.flows.support import _runs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

LOOP = {
    "train.loop.max_steps": 3,
    "train.loop.max_minutes": None,
    "train.loop.eval_every": 3,
    "train.loop.ckpt_every": 3,
    "train.loop.log_every": 1,
    "train.data.num_workers": 0,
    "train.data.eval_max_utterances": 2,
    "train.data.max_batch_seconds": 30,
    "train.ray.num_workers": 0,
}


def test_pretrain_then_finetune_flows_end_to_end(repo):
    from flows.finetune_wav2vec2 import finetune_wav2vec2
    from flows.pretrain_wav2vec2 import pretrain_wav2vec2

    committed = (repo / "params" / "train.yaml").read_text()
    pre_name = yaml.safe_load((repo / "params" / "profiles" / "wav2vec2_pretrain.yaml").read_text())["train"]["name"]
    ft_profile = yaml.safe_load((repo / "params" / "profiles" / "wav2vec2.yaml").read_text())["train"]

    state = pretrain_wav2vec2(overrides=LOOP, return_state=True)
    assert state.is_completed(), state.message
    pre = state.result()
    assert pre["stages"]["train"]["status"] == "ran" and "registry" not in pre
    assert pre["overrides"]["train.model.family"] == "wav2vec2_pretrain"
    assert (repo / "params" / "train.yaml").read_text() == committed
    pre_ws = Path(pre["workspace"])  # the run's outputs, in its own workspace
    pre_model = pre_ws / "models" / pre_name / "model.pt"
    assert torch.load(pre_model, map_location="cpu", weights_only=False)["format"] == "asr-toolkit/wav2vec2-pretraining"
    report = json.loads((pre_ws / "reports" / "train.json").read_text())
    assert report["steps"] == 3

    # fine-tuning starts from the profile's init_from: the pre-training output above
    assert ft_profile["model"]["init_from"] == f"models/{pre_name}/model.pt"
    state = finetune_wav2vec2(overrides=LOOP, stages=["train", "evaluate", "export"], return_state=True)
    assert state.is_completed(), state.message
    ft = state.result()
    ft_ws = Path(ft["workspace"])
    assert {s: ft["stages"][s]["status"] for s in ("train", "evaluate", "export")} == {
        "train": "ran",
        "evaluate": "ran",
        "export": "ran",
    }
    assert (repo / "params" / "train.yaml").read_text() == committed
    name = ft_profile["name"]
    from asr_core.models.artifact import load_model

    _, features, _ = load_model(ft_ws / "models" / name / "model.pt")
    assert type(features).__name__ == "WaveformFeatures"
    evaluation = json.loads((ft_ws / "reports" / "evaluate.json").read_text())
    assert evaluation["test"]["wer"] >= 0.0 and evaluation["test"]["cer"] >= 0.0
    export = json.loads((ft_ws / "reports" / "export.json").read_text())
    assert export["passed"] and all(b["passed"] for b in export["backends"].values()), export
    assert (ft_ws / "exports" / name / "model.onnx").is_file()
    reg = ft["registry"]
    assert reg["registered"] and reg["model_name"] == "asr-wav2vec2" and reg["promoted"]
    lock = yaml.safe_load((ft_ws / "dvc.lock").read_text())
    assert lock["stages"]["train"]["params"]["params/train.yaml"]["train"]["model"]["family"] == "wav2vec2"
    parent = next(r for r in _runs() if r.info.run_id == ft["mlflow_parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.params["flow.family"] == "wav2vec2"
