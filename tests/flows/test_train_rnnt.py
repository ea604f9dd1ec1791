"""The ``train-rnnt`` flow under ``prefect_test_harness`` in a temp copy of the repo (tests/flows/test_flows.py's
fixtures): the profile applied for the run, the train stage on the transducer, params restored.
(The evaluate and export stages on a transducer are tested in tests/asr_core/decoding/test_rnnt_decode.py and
tests/asr_core/export/test_rnnt_export.py; the whole pipeline by `dvc repro`, then the flow over every stage and the
registry, in tests/flows/test_rnnt_pipeline.py; a stage here costs a DVC subprocess each.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.flows.support import TINY_RNNT, _runs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TINY = TINY_RNNT


def test_train_rnnt_flow_trains_a_transducer_with_its_profile(repo):
    from flows.train_rnnt import train_rnnt

    committed = (repo / "params" / "train.yaml").read_text()
    state = train_rnnt(stages=["train"], overrides=TINY, register_model=False, return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()
    assert summary["stages"]["train"]["status"] == "ran"
    assert summary["overrides"]["train.model.family"] == "rnnt"
    assert (repo / "params" / "train.yaml").read_text() == committed  # the profile applied for the run only
    ws = Path(summary["workspace"])  # the run's outputs, in its own workspace
    model_dir = ws / "models" / "rnnt_small"
    assert (model_dir / "model.pt").is_file()
    report = json.loads((ws / "reports" / "train.json").read_text())
    assert report["steps"] == 3 and report["best_dev_wer"] is not None  # max_steps 3 beat the profile's 5000
    lock = yaml.safe_load((ws / "dvc.lock").read_text())
    assert lock["stages"]["train"]["params"]["params/train.yaml"]["train"]["model"]["family"] == "rnnt"
    parent = next(r for r in _runs() if r.info.run_id == summary["mlflow_parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.params["flow.family"] == "rnnt"


def test_nested_override_survives_when_its_parent_section_is_replaced(tmp_path):
    """train_rnnt(max_steps=N) with N == params/train.yaml's value: the profile's whole `train.loop` is
    written, so the equal nested value must be written after it, not dropped as a no-op."""
    from flows.pipeline import effective_overrides

    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "train.yaml").write_text(yaml.safe_dump({"train": {"loop": {"max_steps": 3}}}))
    requested = {"train.loop": {"max_steps": 1500, "log_every": 50}, "train.loop.max_steps": 3}
    assert effective_overrides(tmp_path, requested) == requested
    assert effective_overrides(tmp_path, {"train.loop.max_steps": 3}) == {}
