"""Several models in one pipeline: params/models.yaml lists models that `dvc repro` builds beside the
default, each with its own stages and outputs, compared by `dvc metrics show` and `dvc plots show`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.flows.support import base_repo, copy_repo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_models_listed_in_params_build_side_by_side(tmp_path_factory, tmp_path):
    repo = copy_repo(base_repo(tmp_path_factory), tmp_path)
    train = yaml.safe_load((repo / "params" / "train.yaml").read_text())["train"]
    jasper = {**train, "name": "ignored", "model": {"family": "jasper", "preset": "tiny", "overrides": {}}}
    (repo / "params" / "models").mkdir()
    (repo / "params" / "models" / "jasper_small.yaml").write_text(yaml.safe_dump({"train": jasper}))
    (repo / "params" / "models.yaml").write_text(
        yaml.safe_dump({"models": {"jasper_small": {"params": "params/models/jasper_small.yaml"}}})
    )
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlruns' / 'mlflow.db'}",
    }
    stages = subprocess.run(["dvc", "stage", "list"], cwd=repo, env=env, capture_output=True, text=True).stdout
    assert {"train_model@jasper_small", "evaluate_model@jasper_small"} <= {ln.split()[0] for ln in stages.splitlines()}
    deps = subprocess.run([sys.executable, "-m", "tasks.stage_deps"], cwd=repo, env=env, capture_output=True, text=True)
    assert deps.returncode == 0, deps.stdout + deps.stderr  # the per-model stages' deps cover their imports too
    r = subprocess.run(
        ["dvc", "repro", "evaluate", "evaluate_model@jasper_small"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert (repo / "models" / "quartznet_tiny" / "model.pt").is_file()
    assert (repo / "models" / "jasper_small" / "model.pt").is_file()
    assert (
        json.loads((repo / "reports" / "jasper_small" / "train.json").read_text())["steps"]
        == train["loop"]["max_steps"]
    )
    shown = subprocess.run(
        ["dvc", "metrics", "show", "--json"], cwd=repo, env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "reports/evaluate.json" in shown and "reports/jasper_small/evaluate.json" in shown
    # and dvc plots draws both models' training curves
    plots = subprocess.run(
        ["dvc", "plots", "show", "--json"], cwd=repo, env=env, capture_output=True, text=True, check=True
    ).stdout
    for f in ("reports/train_curve.csv", "reports/dev_curve.csv", "reports/jasper_small/dev_curve.csv"):
        assert f in plots, f"{f} missing from dvc plots show: {plots[:2000]}"
    # the default's stages do not depend on the listed model's params: editing it leaves them unchanged
    status = subprocess.run(["dvc", "status", "train"], cwd=repo, env=env, capture_output=True, text=True).stdout
    assert "up to date" in status, status
