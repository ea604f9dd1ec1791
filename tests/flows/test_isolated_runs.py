"""Flow runs in workspaces of their own: two at once with separate results and the user's working
tree untouched; a cancelled run (SIGTERM to the flow run's process, as Prefect's runner sends on
``prefect flow-run cancel``) stops its whole stage process tree and the next run resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.flows.support import _runs, _set

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _status(repo: Path) -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout


def test_concurrent_flow_runs_are_isolated(repo):
    from flows.train_quartznet import train_quartznet

    before = _status(repo)
    seen: list[str] = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            seen.append(_status(repo))
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    runs = {
        "qa": {"evaluate.max_utterances": 2, "train.seed": 1},
        "qb": {"evaluate.max_utterances": 3, "train.seed": 2},
    }
    with ThreadPoolExecutor(2) as pool:
        futures = {
            name: pool.submit(
                train_quartznet, name=name, overrides=ov, stages=["evaluate"], register_model=False, return_state=True
            )
            for name, ov in runs.items()
        }
        states = {name: f.result() for name, f in futures.items()}
    done.set()
    watcher.join()
    assert all(s == before for s in seen), "the working tree changed while the flows ran"
    assert _status(repo) == before
    summaries = {}
    for name, state in states.items():
        assert state.is_completed(), (name, state.message)
        summaries[name] = state.result()
        assert summaries[name]["stages"]["train"]["status"] == "ran"
    assert summaries["qa"]["workspace"] != summaries["qb"]["workspace"]

    shown = subprocess.run(["dvc", "exp", "show", "--json"], cwd=repo, capture_output=True, text=True).stdout
    models: set[str] = set()
    mlflow_runs = _runs()
    for name, ov in runs.items():
        parent = next(r for r in mlflow_runs if r.info.run_id == summaries[name]["mlflow_parent_run_id"])
        assert parent.info.status == "FINISHED" and parent.info.run_name == f"train-quartznet {name}"
        kids = {
            r.data.tags["stage"]: r for r in mlflow_runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
        }
        assert kids["train"].data.params["train.seed"] == str(ov["train.seed"])
        assert kids["train"].data.params["train.name"] == name
        exp = summaries[name]["dvc_experiment"]  # its params, metrics and outputs, as DVC recorded them
        assert exp in shown
        ref = _exp_ref(repo, exp)
        evaluation = json.loads(_show(repo, ref, "reports/evaluate.json"))
        assert evaluation["test"]["utterances"] == ov["evaluate.max_utterances"]
        assert yaml.safe_load(_show(repo, ref, "params/train.yaml"))["train"]["seed"] == ov["train.seed"]
        lock = yaml.safe_load(_show(repo, ref, "dvc.lock"))
        models.add(next(o["md5"] for o in lock["stages"]["train"]["outs"] if o["path"] == f"models/{name}"))
    assert len(models) == 2


def _exp_ref(repo: Path, exp: str) -> str:
    refs = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)", "refs/exps"], cwd=repo, capture_output=True, text=True
    ).stdout.split()
    return next(r for r in refs if r.endswith("/" + exp))


def _show(repo: Path, ref: str, path: str) -> str:
    return subprocess.run(["git", "show", f"{ref}:{path}"], cwd=repo, capture_output=True, text=True, check=True).stdout


def test_flow_cancel_stops_the_stage_tree_and_the_next_run_resumes(repo, tmp_path):
    from prefect.settings import PREFECT_API_URL

    from tasks import tracking
    from tasks.dvc_stage import pids_with_env

    _set(repo / "params" / "train.yaml", "train", {"loop.max_steps": 20, "loop.ckpt_every": 5, "loop.eval_every": 20})
    subprocess.run(["git", "commit", "-qam", "longer", "--author", "t <t@localhost>"], cwd=repo, check=True)
    before = _status(repo)
    code = (
        "from flows.train_quartznet import train_quartznet\n"
        "train_quartznet(stages=['train'], ray_workers=1, register_model=False)\n"
    )
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(repo)}
    log = open(tmp_path / "flow.log", "w")  # noqa: SIM115
    flow = subprocess.Popen(
        [sys.executable, "-c", code], cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    ckpts = repo / "checkpoints" / "quartznet_tiny"
    deadline = time.monotonic() + 300
    while not list(ckpts.glob("*/ckpt-*.pt")):
        assert flow.poll() is None, (tmp_path / "flow.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.1)
    tree = f"ASR_GUARDIAN_PID={flow.pid}"
    assert pids_with_env(tree), "no stage process found"
    t0 = time.monotonic()
    os.killpg(flow.pid, signal.SIGTERM)  # what Prefect's runner sends the flow run's process group on cancel
    flow.wait(timeout=90)
    stopped_in = time.monotonic() - t0
    deadline = time.monotonic() + 10
    while pids_with_env(tree) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not pids_with_env(tree), f"processes of the cancelled stage left: {pids_with_env(tree)}"
    assert stopped_in < 60
    assert _status(repo) == before, "the cancelled run changed the working tree"

    c = tracking.client()
    parents = c.search_runs([tracking.experiment_id()], "tags.flow = 'train-quartznet'")
    assert [p.info.status for p in parents] == ["KILLED"], (tmp_path / "flow.log").read_text()[-3000:]
    train = c.search_runs([tracking.experiment_id()], f"tags.mlflow.parentRunId = '{parents[0].info.run_id}'")
    assert {r.data.tags["stage"]: r.info.status for r in train}["train"] == "KILLED"
    assert list(ckpts.glob("*/ckpt-*.pt")), "the cancelled run's checkpoints are gone"

    from flows.train_quartznet import train_quartznet

    state = train_quartznet(stages=["train"], register_model=False, ray_workers=1, return_state=True)
    assert state.is_completed(), state.message
    report = json.loads(_show(repo, _exp_ref(repo, state.result()["dvc_experiment"]), "reports/train.json"))
    assert report["steps"] == 20 and report["resumed_from"], report
    assert not any(ckpts.glob("*/ckpt-*.pt")), "the finished run's resumable checkpoints were left"
