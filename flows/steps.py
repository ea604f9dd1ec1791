"""The Prefect tasks the flows sequence: one DVC stage, and the registration of a model.

Each task gets the MLflow parent run id as an argument (MLflow's active run is thread-local
and Prefect runs tasks in threads). A stage's own process opens its child run under that
parent (``ASR_PARENT_RUN_ID``); when DVC skips the stage, the task opens the child run itself
(tag ``dvc.status`` = ``unchanged`` or ``run-cache``), so every stage has exactly one child.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.states import Completed, State

from asr_core.data.download.checksums import md5_file as file_md5  # noqa: F401 (re-exported)
from tasks import tracking
from tasks.dvc_stage import StageFailed, lock_outs, run_stage


def value(x: Any) -> Any:
    """A task's return value, whether it came back as data or as a (custom-named) state."""
    return x.result() if isinstance(x, State) else x


def md5_tags(repo: Path, stages: list[str]) -> dict[str, str]:
    """``dvc.md5.<stage>.<out path>`` tags from ``dvc.lock`` (the data a run was made from)."""
    return {f"dvc.md5.{k.replace(':', '.', 1)}": v for k, v in lock_outs(repo, stages).items()}


def _task_run_id() -> str:
    from prefect.runtime import task_run

    return str(task_run.id or "")


@task(name="dvc-stage", task_run_name="{stage}")
def dvc_stage(
    stage: str,
    parent_run_id: str,
    *,
    experiment: str = tracking.EXPERIMENT,
    force: bool = False,
    env: Mapping[str, str] | None = None,
    repo: str | None = None,
) -> Any:
    """``dvc repro --single-item <stage>`` in ``repo`` (default: the current directory), output
    streamed to the Prefect log.

    Returns ``{"stage", "status", "seconds", "mlflow_run_id"}``; a stage DVC skipped comes
    back in a Completed state named ``Skipped`` (shown so in the Prefect UI).
    """
    logger = get_run_logger()
    repo = Path(repo) if repo else Path.cwd()
    stage_env = {"ASR_PARENT_RUN_ID": parent_run_id, "ASR_EXPERIMENT": experiment, **(env or {})}
    tags = {"stage": stage, "prefect.task_run_id": _task_run_id()}
    started_ms = int(time.time() * 1000)  # a retried attempt must not pick up the failed attempt's run
    try:
        result = run_stage(stage, repo=repo, env=stage_env, log=logger.info, force=force)
    except StageFailed as e:
        child = tracking.find_child_run(parent_run_id, stage, experiment, since_ms=started_ms)
        if child is None:  # failed before its process opened a run (a missing dependency, ...)
            child = tracking.start_flow_run(stage, tags=tags, parent_run_id=parent_run_id, experiment=experiment)
            tracking.end_flow_run(child, error=e.errors[-1] if e.errors else str(e).splitlines()[0])
        logger.error(str(e))
        raise
    child = tracking.find_child_run(parent_run_id, stage, experiment, since_ms=started_ms)
    tags.update({"dvc.status": result.how, **md5_tags(repo, [stage])})
    if child is None:
        child = tracking.start_flow_run(stage, tags=tags, parent_run_id=parent_run_id, experiment=experiment)
        tracking.end_flow_run(child)
    else:
        c = tracking.client()
        for k, v in tags.items():
            c.set_tag(child, k, str(v))
    out = {"stage": stage, "status": result.how, "seconds": result.seconds, "mlflow_run_id": child}
    if result.skipped:
        why = "inputs unchanged" if result.how == "unchanged" else "restored from DVC's run-cache"
        logger.info(f"stage '{stage}' skipped: {why}")
        return Completed(name="Skipped", message=f"{stage}: {why}", data=out)
    return out


@task(name="register-model")
def register_model(
    parent_run_id: str,
    *,
    model_name: str,
    train: Mapping[str, Any],
    wer_splits: list[str],
    extra_tags: Mapping[str, Any],
    repo: str | None = None,
) -> Any:
    """Register ``exports/<name>/``: its ``model.onnx`` (ONNX flavour), or a transducer's three graphs
    (the folder); alias ``candidate``, maybe ``champion`` (tasks/registry.py)."""
    from tasks.registry import export_graphs, register

    logger = get_run_logger()
    repo = Path(repo) if repo else Path.cwd()
    export_dir = repo / "exports" / train["name"]
    if not export_graphs(export_dir):
        msg = (
            f"registry: no exported model in {export_dir.relative_to(repo)} (model.onnx, or encoder/predictor/"
            f"joint.onnx; no export stage output): nothing registered"
        )
        logger.warning(msg)
        return Completed(name="Skipped", message=msg, data={"registered": False, "reason": msg})
    child = tracking.start_flow_run(
        "register", tags={"stage": "register", "prefect.task_run_id": _task_run_id()}, parent_run_id=parent_run_id
    )
    tags = {
        "train_name": train["name"],
        "family": train["model"]["family"],
        "preset": train["model"]["preset"],
        "flow_parent_run_id": parent_run_id,
        **extra_tags,
        **md5_tags(repo, ["train", "export"]),
    }
    try:
        summary = register(
            model_name=model_name,
            export_dir=export_dir,
            evaluation_path=repo / "reports" / "evaluate.json",
            run_id=child,
            tags=tags,
            splits=wer_splits,
        )
    except BaseException as e:
        tracking.end_flow_run(child, error=e)
        raise
    verdict = (
        "promoted to champion"
        if summary["promoted"]
        else f"not promoted: champion v{summary['previous_champion']} has WER {summary['previous_champion_wer']}"
    )
    how = "already registered (same ONNX graph) as" if summary["reused"] else "registered"
    logger.info(
        f"{how} {summary['model_uri']} ({summary['wer_split']} WER {summary['wer']:.4f}), alias candidate; {verdict}"
    )
    tracking.end_flow_run(child, tags={"registered_model": summary["model_uri"], "promoted": summary["promoted"]})
    return {"registered": True, **summary}
