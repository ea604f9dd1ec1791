"""The one tracking module: every stage talks to MLflow through here.

Store: ``sqlite:///<cwd>/mlruns/mlflow.db`` with artifacts under ``mlruns/artifacts``
(STACK.md: the plain ``./mlruns`` file store is deprecated). ``MLFLOW_TRACKING_URI``
overrides the store (tests use a temporary one). A stage run nests under the run
named by ``ASR_PARENT_RUN_ID`` when set (the Prefect flows set it), otherwise it
is a top-level run. Only the process that calls :func:`stage_run` writes: in
distributed training that is rank 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import tasks.offline  # noqa: F401  (telemetry off before mlflow is imported)

EXPERIMENT = os.environ.get("ASR_EXPERIMENT", "asr-toolkit")


def tracking_uri() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    root = Path.cwd() / "mlruns"
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"


def _artifact_root(uri: str) -> str | None:
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///") :]).parent / "artifacts").resolve().as_uri()
    return None


def _mlflow():
    import logging

    import mlflow

    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    exp = mlflow.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        mlflow.create_experiment(EXPERIMENT, artifact_location=_artifact_root(uri))
    mlflow.set_experiment(EXPERIMENT)
    return mlflow


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists become JSON strings (MLflow params are strings)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class StageRun:
    """What a stage logs to: a thin facade so stages never import mlflow themselves."""

    def __init__(self, mlflow, run):
        self._mlflow = mlflow
        self.run = run
        self.run_id = run.info.run_id

    def log_params(self, params: Mapping[str, Any], prefix: str = "") -> None:
        flat = flatten(params, prefix)
        items = list(flat.items())
        for i in range(0, len(items), 100):  # MLflow caps a batch at 100 params
            self._mlflow.log_params(dict(items[i : i + 100]))

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        flat = {
            k: float(v) for k, v in flatten(metrics).items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        if flat:
            self._mlflow.log_metrics(flat, step=step)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self._mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def log_dict(self, obj: Any, name: str) -> None:
        self._mlflow.log_dict(obj, name)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._mlflow.set_tags({k: str(v) for k, v in tags.items()})


@contextlib.contextmanager
def stage_run(stage: str, params: Mapping[str, Any] | None = None, label: str | None = None) -> Iterator[StageRun]:
    """Open an MLflow run for one stage; FAILED status (and the error) when the stage raises,
    KILLED when it is stopped (Ctrl-C, SIGTERM, its guardian gone: tasks/lifecycle.py).

    The run is named ``<stage> <label>`` (``train quartznet_tiny``) and nests under the flow's run
    (``ASR_PARENT_RUN_ID``) or, under a plain ``dvc repro`` / ``make run``, under one parent run per
    ``dvc repro`` invocation (:func:`repro_parent`). Tag ``dvc.stage`` names its ``dvc.lock`` entry."""
    from tasks import lifecycle

    lifecycle.install()
    mlflow = _mlflow()
    parent = os.environ.get("ASR_PARENT_RUN_ID")
    repro = None if parent else repro_parent()
    tags = {"stage": stage, "git_commit": git_commit(), "dvc.stage": stage}
    if parent or repro:
        tags["mlflow.parentRunId"] = parent or repro
    run = mlflow.start_run(run_name=f"{stage} {label}" if label else stage, tags=tags)
    sr = StageRun(mlflow, run)
    try:
        if params:
            sr.log_params(params)
        yield sr
    except KeyboardInterrupt as e:
        with contextlib.suppress(Exception):
            mlflow.set_tag("error", f"stopped: {e or 'Ctrl-C'}")
        mlflow.end_run(status="KILLED")
        _end_repro(repro, "KILLED")
        raise
    except BaseException as e:
        with contextlib.suppress(Exception):
            mlflow.set_tag("error", f"{type(e).__name__}: {e}"[:5000])
        mlflow.end_run(status="FAILED")
        _end_repro(repro, "FAILED")
        raise
    else:
        mlflow.end_run(status="FINISHED")
        _end_repro(repro, "FINISHED")


def repro_parent() -> str | None:
    """The MLflow run grouping the stages of one ``dvc repro`` (made by its first stage), or None when
    this stage was not started by ``dvc repro``. The invocation is told apart by the ``dvc`` process's
    pid and start time (tag ``dvc.repro``); its name carries the model of ``params/train.yaml``."""
    from tasks.lifecycle import guardian_pid, start_time

    pid = guardian_pid()
    if pid is None:
        return None
    key = f"{os.uname().nodename}:{pid}:{start_time(pid)}"
    c = client()
    exp = experiment_id()
    found = c.search_runs([exp], filter_string=f"tags.`dvc.repro` = '{key}'", max_results=1)
    if found:
        c.update_run(found[0].info.run_id, status="RUNNING")
        return found[0].info.run_id
    name = "dvc repro"
    with contextlib.suppress(Exception):
        import yaml

        train = yaml.safe_load(Path("params/train.yaml").read_text(encoding="utf-8"))["train"]
        name = f"dvc repro {train['name']}"
    return c.create_run(
        exp, run_name=name, tags={"dvc.repro": key, "git_commit": git_commit(), "workspace": str(Path.cwd())}
    ).info.run_id


def _end_repro(run_id: str | None, status: str) -> None:
    """The parent ends with its latest stage (a next stage of the same ``dvc repro`` reopens it)."""
    if run_id:
        with contextlib.suppress(Exception):
            client().set_terminated(run_id, status=status)


def log_summary_artifact(sr: StageRun, summary: Mapping[str, Any], name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / name
        p.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        sr.log_artifact(p)


# ---- Flow runs (flows/): a parent run per flow run, one child per stage. ----------------------
# The flows use an MlflowClient with explicit run ids: MLflow's active run is thread-local and
# Prefect runs tasks in threads (STACK.md), so nothing here relies on mlflow.start_run().


def client():
    """An MlflowClient on the store of :func:`tracking_uri` (no active-run state)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri())


def experiment_id(name: str = EXPERIMENT) -> str:
    c = client()
    exp = c.get_experiment_by_name(name)
    if exp is None:
        try:
            return c.create_experiment(name, artifact_location=_artifact_root(tracking_uri()))
        except Exception:  # created meanwhile by another process
            exp = c.get_experiment_by_name(name)
            if exp is None:
                raise
    return exp.experiment_id


def start_flow_run(
    name: str,
    *,
    tags: Mapping[str, Any],
    params: Mapping[str, Any] | None = None,
    experiment: str = EXPERIMENT,
    parent_run_id: str | None = None,
) -> str:
    """Open a run for a flow (or, with ``parent_run_id``, a child of one); returns its id."""
    from mlflow.entities import Param

    all_tags = {"git_commit": git_commit(), **{k: str(v) for k, v in tags.items()}}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    c = client()
    run_id = c.create_run(experiment_id(experiment), run_name=name, tags=all_tags).info.run_id
    items = [Param(k, str(v)[:6000]) for k, v in flatten(params or {}).items()]
    for i in range(0, len(items), 100):
        c.log_batch(run_id, params=items[i : i + 100])
    return run_id


def end_flow_run(
    run_id: str,
    *,
    error: BaseException | str | None = None,
    tags: Mapping[str, Any] | None = None,
    status: str | None = None,
) -> None:
    """FINISHED, or FAILED (``status``: KILLED for a cancelled run) with the error as the ``error`` tag."""
    c = client()
    for k, v in (tags or {}).items():
        c.set_tag(run_id, k, str(v))
    if error is not None:
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        c.set_tag(run_id, "error", text[:5000])
    c.set_terminated(run_id, status=status or ("FAILED" if error is not None else "FINISHED"))


def find_child_run(
    parent_run_id: str, stage: str, experiment: str = EXPERIMENT, since_ms: int | None = None
) -> str | None:
    """The newest run a stage process opened under ``parent_run_id`` (ASR_PARENT_RUN_ID), if any;
    with ``since_ms``, only one started at or after that time (this attempt's, not a retried one's)."""
    since = f" and attributes.start_time >= {int(since_ms)}" if since_ms is not None else ""
    runs = client().search_runs(
        [experiment_id(experiment)],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.stage = '{stage}'{since}",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None
