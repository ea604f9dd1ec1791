"""A stage stopped mid-run: ``dvc repro`` SIGKILLed during training resumes from its last checkpoint
and ends bit-identical to an uninterrupted run; the orphaned stage process stops by itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.flows.support import _set, base_repo, copy_repo

pytestmark = pytest.mark.slow


def _env(repo: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlruns' / 'mlflow.db'}",
        "TQDM_DISABLE": "1",
    }


def _stage_pids(repo: Path, module: str) -> list[int]:
    """``python -m <module>`` processes working in ``repo``."""
    out = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(d / "cwd")
        except OSError:
            continue
        if module.encode() in argv and Path(cwd) == repo:
            out.append(int(d.name))
    return out


def _final_state(repo: Path) -> dict[str, torch.Tensor]:
    from asr_core.models.artifact import read_model_file

    return read_model_file(repo / "models" / "quartznet_tiny" / "final.pt")["model"]


def _losses(repo: Path) -> list[tuple[int, str]]:
    from tasks.train_log import read_curve

    return [(int(r["step"]), r["loss"]) for r in read_curve(repo / "reports" / "train_curve.csv")]


def _repro_until_checkpoint(repo: Path, env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
    """``dvc repro train`` in a session of its own, returned once its first checkpoint is on disk."""
    dvc = subprocess.Popen(
        ["dvc", "repro", "train"],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        # as from a terminal: Ctrl-C not ignored, whatever this test process inherited
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    ckpts = repo / "checkpoints" / "quartznet_tiny"
    deadline = time.monotonic() + 240
    while not list(ckpts.glob("*/ckpt-*.pt")):
        assert dvc.poll() is None, "dvc repro ended before the first checkpoint: make the run longer"
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.05)
    return dvc, ckpts


@pytest.fixture
def long_train_repo(tmp_path_factory, tmp_path):
    repo = copy_repo(base_repo(tmp_path_factory), tmp_path)
    _set(
        repo / "params" / "train.yaml",
        "train",
        {"loop.max_steps": 30, "loop.ckpt_every": 4, "loop.eval_every": 30, "loop.keep_ckpts": 2},
    )
    return repo


def test_repro_resumes_after_kill(long_train_repo):
    repo = long_train_repo
    env = _env(repo)
    dvc, ckpts = _repro_until_checkpoint(repo, env)
    stage = _stage_pids(repo, "tasks.train")
    assert stage, "the train stage process was not found"
    os.kill(dvc.pid, signal.SIGKILL)  # dvc only: its stage is orphaned, as after `kill -9` by a user
    dvc.wait()
    deadline = time.monotonic() + 30
    while _stage_pids(repo, "tasks.train") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _stage_pids(repo, "tasks.train"), "the orphaned train stage kept running after dvc was killed"
    assert list(ckpts.glob("*/ckpt-*.pt")), "the checkpoints did not survive the kill"

    r = subprocess.run(["dvc", "repro", "train"], cwd=repo, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads((repo / "reports" / "train.json").read_text())
    assert report["steps"] == 30
    assert report["resumed_from"], f"the second dvc repro started from step 0: {report}"
    assert not ckpts.exists() or not any(ckpts.iterdir()), "a finished run's resumable checkpoints were left"
    assert list((repo / "models" / "quartznet_tiny" / "checkpoints").glob("ckpt-*.pt"))
    resumed = _final_state(repo)
    resumed_curve = _losses(repo)

    r = subprocess.run(["dvc", "repro", "--force", "train"], cwd=repo, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads((repo / "reports" / "train.json").read_text())["resumed_from"] is None
    straight = _final_state(repo)
    assert resumed.keys() == straight.keys()
    for k in straight:
        assert torch.equal(resumed[k], straight[k]), f"{k}: resumed run differs from an uninterrupted one"
    # the plotted curve of the killed-and-resumed run: every step once, the same losses as straight through
    assert resumed_curve == _losses(repo) and resumed_curve[0][0] <= 10 and resumed_curve[-1][0] == 30


def test_ctrl_c_on_dvc_repro_marks_the_run_killed_and_the_next_repro_resumes(long_train_repo, monkeypatch):
    """Ctrl-C in the terminal: SIGINT to the foreground process group (dvc and the stage)."""
    from tasks import tracking

    repo = long_train_repo
    env = _env(repo)
    dvc, ckpts = _repro_until_checkpoint(repo, env)
    os.killpg(dvc.pid, signal.SIGINT)
    dvc.wait(timeout=60)
    deadline = time.monotonic() + 30
    while _stage_pids(repo, "tasks.train") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _stage_pids(repo, "tasks.train")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
    runs = tracking.client().search_runs([tracking.experiment_id()], "tags.stage = 'train'")
    assert [r.info.status for r in runs] == ["KILLED"], [(r.info.status, r.data.tags.get("error")) for r in runs]
    r = subprocess.run(["dvc", "repro", "train"], cwd=repo, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads((repo / "reports" / "train.json").read_text())
    assert report["steps"] == 30 and report["resumed_from"], report
