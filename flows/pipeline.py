"""The body shared by the training flows: validated overrides, a run workspace of its own, one
MLflow parent run, the stages in order, a DVC experiment.

Run from the repository root (the serve process runs there; tests chdir into a copy). The user's
working tree is only read (flows/workspace.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from prefect import get_run_logger

from asr_core.io.atomic import atomic_write_text
from flows import config
from flows.overrides import rendered, split_key
from flows.steps import dvc_stage, md5_tags, register_model, value
from flows.validation import validate
from flows.workspace import Workspace, save_experiment
from flows.workspace import create as create_workspace
from flows.workspace import release as release_workspace
from tasks import tracking
from tasks.dvc_stage import pipeline_stages, stage_plan


def prefect_context() -> dict[str, str]:
    from prefect.runtime import deployment, flow_run

    return {
        "prefect.flow_run_id": str(flow_run.id or ""),
        "prefect.flow_run_name": str(flow_run.name or ""),
        "prefect.flow_name": str(flow_run.flow_name or ""),
        "prefect.deployment": str(deployment.name or ""),
    }


def _get(data: Mapping[str, Any], parts: list[str]) -> Any:
    node: Any = data
    for p in parts:
        if not isinstance(node, Mapping) or p not in node:
            return KeyError
        node = node[p]
    return node


def effective_overrides(repo: Path, requested: Mapping[str, Any]) -> dict[str, Any]:
    """Only the overrides whose value differs from the committed one (a no-op never rewrites a file)."""
    out, cache = {}, {}
    for key, v in requested.items():
        rel, parts = split_key(key)
        if rel not in cache:
            path = repo / rel
            cache[rel] = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}
        # kept even when equal to the committed value if a parent section is replaced too (a profile's
        # whole `train.loop`): dropping it would let the parent's value win
        replaced_parent = any(key.startswith(k + ".") for k in requested)
        current = _get(cache[rel], parts)
        if v is None and current is KeyError and not replaced_parent:
            continue  # null for a key the file does not set: already absent
        if replaced_parent or current != v:
            out[key] = v
    return out


def run_name(ctx: Mapping[str, str], flow_name: str) -> str:
    """The run's workspace and DVC experiment name: the Prefect flow run's name and id prefix."""
    import re
    import uuid

    base = ctx.get("prefect.flow_run_name") or flow_name
    suffix = (ctx.get("prefect.flow_run_id") or uuid.uuid4().hex).replace("-", "")[:6]
    return re.sub(r"[^A-Za-z0-9_-]+", "-", f"{base}-{suffix}").strip("-")


def run_training(
    flow_name: str,
    family: str,
    requested: Mapping[str, Any],
    *,
    stages: list[str] | None,
    register: bool,
    workspace: Workspace | None = None,
) -> dict[str, Any]:
    """Validate, then run the stages in a workspace of their own (flows/workspace.py) and record the
    run as a DVC experiment. ``workspace``: run in that one and leave it (a flow that chains runs)."""
    logger = get_run_logger()
    repo = Path.cwd()
    cfg = config.load(repo)["flows"]
    overrides = effective_overrides(repo, requested)
    validate(repo, overrides)  # before anything else: a bad parameter fails the flow run in seconds
    requested_stages = list(stages or cfg["stages"])
    stages, missing = stage_plan(repo, requested_stages)
    ctx = prefect_context()
    own = workspace is None
    ws = workspace or create_workspace(
        repo, run_name(ctx, flow_name), log=logger.info, keep=int(cfg["keep_workspaces"])
    )
    summary: dict[str, Any] = {
        "flow": flow_name,
        "overrides": overrides,
        "stages": {},
        "workspace": str(ws.path),
        "run_name": ws.name,
    }
    for rel, text in rendered(repo, overrides).items():  # on the user's params: a reused workspace may hold others
        atomic_write_text(ws.path / rel, text)
        logger.info(
            f"params override for this run: {rel} <- "
            + ", ".join(f"{k}={v!r}" for k, v in overrides.items() if split_key(k)[0] == rel)
        )
    train = yaml.safe_load((ws.path / "params" / "train.yaml").read_text(encoding="utf-8"))["train"]
    available = pipeline_stages(ws.path)
    parent = tracking.start_flow_run(
        f"{flow_name} {train['name']}",
        tags={
            **ctx,
            "flow": flow_name,
            "overrides": json.dumps(overrides, sort_keys=True),
            "train_name": train["name"],
            "workspace": str(ws.path),
            "dvc.exp": ws.name,
        },
        params={
            "override": {k: json.dumps(v) for k, v in overrides.items()},
            "flow": {"stages": json.dumps(stages), "family": family, "train_name": train["name"]},
        },
    )
    summary["mlflow_parent_run_id"] = parent
    logger.info(f"MLflow parent run {parent} ({tracking.tracking_uri()})")
    added = [s for s in stages if s not in requested_stages]
    logger.info("stages: " + " -> ".join(stages) + (f" ({', '.join(added)}: needed upstream)" if added else ""))
    for stage in missing:
        logger.warning(f"stage '{stage}' not available: dvc.yaml has no such stage; going on without it")
        summary["stages"][stage] = {"status": "not available"}
    try:
        for stage in stages:
            step = dvc_stage
            if stage == "download":
                from prefect.tasks import exponential_backoff

                step = dvc_stage.with_options(
                    retries=int(cfg["download_retries"]),
                    retry_delay_seconds=exponential_backoff(backoff_factor=float(cfg["download_retry_delay_s"])),
                )
            summary["stages"][stage] = value(step(stage, parent, env=ws.env(), repo=str(ws.path)))
        if register:
            model_name = cfg["registry"].get(train["model"]["family"])
            if model_name is None:
                raise ValueError(
                    f"params/flows.yaml: flows.registry has no model name for family {train['model']['family']!r}"
                )
            summary["registry"] = value(
                register_model(
                    parent,
                    model_name=model_name,
                    train=train,
                    wer_splits=list(cfg["wer_splits"]),
                    extra_tags={**ctx, "git_commit": tracking.git_commit(), "dvc.exp": ws.name},
                    repo=str(ws.path),
                )
            )
        summary["dvc_experiment"] = save_experiment(ws, stages, log=logger.info)
    except BaseException as e:
        tracking.end_flow_run(parent, error=e, tags=md5_tags(ws.path, available), status=stop_status(e))
        if own:
            release_workspace(ws)
        raise
    _log_lock(parent, ws.path)
    tracking.end_flow_run(parent, tags=md5_tags(ws.path, available))
    logger.info(f"outputs in {ws.path} (DVC experiment {ws.name!r})")
    if own:
        release_workspace(ws)
    return summary


def stop_status(e: BaseException) -> str:
    """KILLED for a cancelled or interrupted run (Prefect's TerminationSignal, Ctrl-C), else FAILED."""
    from prefect.exceptions import TerminationSignal

    return "KILLED" if isinstance(e, (TerminationSignal, KeyboardInterrupt)) else "FAILED"


def _log_lock(run_id: str, repo: Path) -> None:
    lock = repo / "dvc.lock"
    if lock.is_file():
        tracking.client().log_artifact(run_id, str(lock))
