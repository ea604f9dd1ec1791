"""Helpers of the flow tests: a committed temp copy of the repo with tiny params (built once per
session, copied per test), params edits, and what Prefect and MLflow recorded."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests import REPO

_BASE: dict[str, Path] = {}
# The transducer flow's tiny run (overrides of params/profiles/rnnt.yaml).
TINY_RNNT = {
    "train.loop.max_steps": 3,
    "train.loop.max_minutes": None,
    "train.loop.eval_every": 3,
    "train.loop.ckpt_every": 3,
    "train.loop.log_every": 1,
    "train.data.num_workers": 0,
    "train.data.eval_max_utterances": 2,
    "train.data.max_batch_seconds": 30,
    "train.ray.num_workers": 0,
    "train.optim.schedule.warmup_steps": 1,
    "train.model.overrides": {"enc_hidden": 32, "enc_proj": 32},
    "train.model.head_config": {"pred_hidden": 32, "pred_proj": 32, "joint_dim": 32},
}


def _set(path: Path, key: str, updates: dict) -> None:
    data = yaml.safe_load(path.read_text())
    for k, v in updates.items():
        node = data[key]
        *parents, leaf = k.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = v
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _git(args: list[str], cwd: Path) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _tiny_params(work: Path) -> None:
    p = work / "params"
    _set(
        p / "download.yaml",
        "download",
        {"synthetic.train": 24, "synthetic.dev": 4, "synthetic.test": 4, "synthetic.test_unseen_voice": 4},
    )
    _set(p / "tokenizer.yaml", "tokenizer", {"sentencepiece": {"vocab_size": 40, "model_type": "bpe"}})
    _set(
        p / "train.yaml",
        "train",
        {
            "loop.max_steps": 3,
            "loop.max_minutes": None,
            "loop.eval_every": 3,
            "loop.ckpt_every": 3,
            "loop.log_every": 1,
            "data.num_workers": 0,
            "data.eval_max_utterances": 4,
            "data.max_batch_seconds": 30,
            "ray.num_workers": 0,
            "optim.schedule.warmup_steps": 1,
        },
    )
    _set(p / "evaluate.yaml", "evaluate", {"num_workers": 0, "lm": None})
    if (p / "export.yaml").is_file():  # the export and benchmark stages, kept to a few utterances and runners
        _set(p / "export.yaml", "export", {"max_utterances": 4, "num_workers": 0, "reduced_precision": []})
    if (p / "benchmark.yaml").is_file():
        _set(
            p / "benchmark.yaml",
            "benchmark",
            {
                "devices": ["cpu"],
                "cpu_runners": ["torch_fp32", "onnxruntime_fp32"],
                "grid.batch_sizes": [1],
                "grid.clip_seconds": [2.0],
                "grid.warmup": 1,
                "grid.iterations": 1,
                "grid.min_iterations": 1,
                "wer.max_utterances": 4,
                "wer.num_workers": 0,
                "train_throughput.enabled": False,
            },
        )


def base_repo(tmp_path_factory) -> Path:
    """A committed copy of the working tree with tiny params and the data stages done by
    ``dvc repro`` (built once per session; each test works on its own copy)."""
    if "base" in _BASE:
        return _BASE["base"]
    work = tmp_path_factory.mktemp("flowbase") / "repo"
    files = (
        subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file() and not rel.startswith(("reports/", "dvc.lock")):
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, work / rel)
    _tiny_params(work)
    _git(["init", "-q"], work)
    _git(["add", "-A"], work)
    _git(["commit", "-q", "-m", "tiny"], work)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlruns' / 'mlflow.db'}",
    }
    r = subprocess.run(["dvc", "repro", "tokenizer"], cwd=work, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    _BASE["base"] = work
    return work


def trained_repo(tmp_path_factory) -> Path:
    """A repo where the whole training flow has run (the end-to-end test's, or built here)."""
    if "trained" not in _BASE:
        work = tmp_path_factory.mktemp("flowtrained") / "repo"
        shutil.copytree(base_repo(tmp_path_factory), work, symlinks=True)
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlruns' / 'mlflow.db'}",
        }
        r = subprocess.run(["dvc", "repro"], cwd=work, env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        _BASE["trained"] = work
    return _BASE["trained"]


def copy_repo(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "repo"
    shutil.copytree(src, dst, symlinks=True)
    return dst


def _runs(experiment: str = "asr-toolkit"):
    from tasks import tracking

    return tracking.client().search_runs([tracking.experiment_id(experiment)], max_results=500)


def _task_states(flow_run_id, wanted: dict[str, str]) -> dict[str, str]:
    """Task run name -> state name, as the Prefect API holds them. Prefect 3 records task runs from
    events, asynchronously: on a loaded machine the API may not have them all yet right after the
    flow returns, so wait (up to 30 s) until the ``wanted`` names have the ``wanted`` states."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + 30
    while True:
        with get_client(sync_client=True) as c:
            runs = c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        states = {r.name: r.state.name for r in runs}
        if all(states.get(k) == v for k, v in wanted.items()) or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


def _logs(flow_run_id, wanted: str) -> str:
    """The flow run's logs as the Prefect API holds them (sent in batches: wait for ``wanted``)."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    deadline = time.monotonic() + 20
    while True:
        with get_client(sync_client=True) as c:
            logs = c.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        text = "\n".join(log.message for log in logs)
        if wanted in text or time.monotonic() > deadline:
            return text
        time.sleep(1)
