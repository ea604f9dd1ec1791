"""Flow ``benchmark-nightly``: re-run the DVC ``benchmark`` stage for each champion model and
compare the figures with earlier nights (``tasks.bench_history.compare_with_history``).

Scheduled by ``params/flows.yaml`` (``flows.nightly.cron``, 02:00 by default); on demand::

    prefect deployment run benchmark-nightly/nightly

For each registered model of ``flows.registry`` that has a ``champion`` alias, the champion's
``train_name`` tag names its outputs; after checking that ``exports/<train_name>/`` in the user's
checkout holds the champion's graph(s) (md5), the stage runs in a run workspace of its own
(flows/workspace.py) with those outputs linked in and ``train.name`` overridden to it.
A regression ends the flow run **Failed** with a message naming the regressed cells; the
comparison report (markdown) is an artifact of the nightly MLflow run either way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from asr_core.io.atomic import atomic_write_text
from flows import config
from flows.overrides import rendered
from flows.pipeline import prefect_context, run_name, stop_status
from flows.steps import dvc_stage, md5_tags, value
from flows.workspace import create as create_workspace
from flows.workspace import link_tree
from flows.workspace import remove as remove_workspace
from tasks import tracking
from tasks.dvc_stage import pipeline_stages

EXPERIMENT = "benchmark-nightly"


class BenchmarkRegression(RuntimeError):
    """A champion's benchmark figures fell behind earlier nights."""


def champion_outputs(repo: Path, model_name: str) -> tuple[Any, str] | None:
    """(champion version, its train name) or None when ``model_name`` has no champion."""
    from tasks.registry import current_champion, export_graphs, graphs_md5

    version, _ = current_champion(model_name)
    if version is None:
        return None
    train_name = version.tags.get("train_name")
    if not train_name:
        raise ValueError(f"{model_name} v{version.version}: model version has no 'train_name' tag")
    export_dir = repo / "exports" / train_name  # model.onnx, or a transducer's three graphs
    graphs = export_graphs(export_dir)
    got = graphs_md5(graphs) if graphs else "missing"
    want = version.tags.get("onnx_md5")
    if not graphs or (want and got != want):
        raise FileNotFoundError(
            f"{model_name} v{version.version} (champion): {export_dir.relative_to(repo)} in the workspace does not "
            f"hold its model (md5 {got} != {want}); re-create it with its flow run "
            f"({version.tags.get('prefect.flow_run_id', '?')}) or `dvc checkout` at git commit {version.tags.get('git_commit', '?')}"
        )
    return version, train_name


def _compare(metrics: dict, params: dict) -> dict:
    from tasks.bench_history import compare_with_history

    return compare_with_history(metrics, params=params, tracking_uri=tracking.tracking_uri(), experiment=EXPERIMENT)


@flow(name="benchmark-nightly", log_prints=True)
def benchmark_nightly(models: list[str] | None = None) -> dict[str, Any]:
    """``models``: registered model names (default: every name in ``flows.registry``)."""
    logger = get_run_logger()
    repo = Path.cwd()
    cfg = config.load(repo)["flows"]
    names = models or list(dict.fromkeys(cfg["registry"].values()))
    stages = list(cfg["nightly"]["stages"])
    available = pipeline_stages(repo)
    ctx = prefect_context()
    out: dict[str, Any] = {}
    regressions: list[str] = []
    for model_name in names:
        found = champion_outputs(repo, model_name)
        if found is None:
            logger.warning(f"{model_name}: no champion registered yet; nothing to benchmark")
            out[model_name] = {"status": "no champion"}
            continue
        version, train_name = found
        ws = create_workspace(repo, run_name(ctx, f"nightly-{model_name}"), log=logger.info)
        _carry_outputs(repo, ws.path, train_name)
        for rel, text in rendered(ws.path, _name_override(repo, train_name)).items():
            atomic_write_text(ws.path / rel, text)
        parent = tracking.start_flow_run(
            f"benchmark-nightly {model_name} v{version.version}",
            experiment=EXPERIMENT,
            tags={
                **ctx,
                "flow": "benchmark-nightly",
                "registered_model": model_name,
                "model_version": version.version,
                "train_name": train_name,
            },
        )
        try:
            result = {"version": version.version, "mlflow_parent_run_id": parent, "stages": {}}
            for stage in stages:
                if stage not in available:
                    logger.warning(f"stage '{stage}' not available: dvc.yaml has no such stage; going on")
                    result["stages"][stage] = {"status": "not available"}
                    continue
                result["stages"][stage] = value(
                    dvc_stage(stage, parent, experiment=EXPERIMENT, force=True, env=ws.env(), repo=str(ws.path))
                )
            report_path = ws.path / "reports" / "benchmark.json"
            if "benchmark" in available:
                verdict = _compare(json.loads(report_path.read_text(encoding="utf-8")), _bench_params(ws.path))
                tracking.client().log_text(parent, verdict["report_md"], "benchmark_history.md")
                result.update(regressed=bool(verdict["regressed"]), findings=verdict["findings"])
                logger.info(verdict["report_md"])
                if verdict["regressed"]:
                    regressions.append(
                        f"{model_name} v{version.version}: " + "; ".join(_finding(f) for f in verdict["findings"])
                    )
        except BaseException as e:
            tracking.end_flow_run(parent, error=e, tags=md5_tags(ws.path, available), status=stop_status(e))
            remove_workspace(ws, log=logger.info)
            raise
        tracking.end_flow_run(
            parent, tags={**md5_tags(ws.path, available), "regressed": result.get("regressed", "n/a")}
        )
        remove_workspace(ws, log=logger.info)
        out[model_name] = result
    if regressions:
        raise BenchmarkRegression("benchmark regression against earlier nights: " + " | ".join(regressions))
    return out


def _finding(f: Any) -> str:
    if isinstance(f, dict) and {"cell", "metric"} <= set(f):
        return f"{f['cell']} {f['metric']} {f.get('old')} -> {f.get('new')}"
    return str(f)


def _carry_outputs(repo: Path, ws: Path, train_name: str) -> None:
    """The champion's model and export folders and the data, from the user's checkout into the run workspace
    (hard links where possible: nothing is written on the user's side)."""
    import shutil

    for rel in (f"models/{train_name}", f"exports/{train_name}", "data"):  # data: the benchmark's manifests
        if (repo / rel).is_dir():
            shutil.rmtree(ws / rel, ignore_errors=True)
            link_tree(repo / rel, ws / rel)


def _name_override(repo: Path, train_name: str) -> dict[str, Any]:
    import yaml

    committed = yaml.safe_load((repo / "params" / "train.yaml").read_text(encoding="utf-8"))["train"]["name"]
    return {} if committed == train_name else {"train.name": train_name}


def _bench_params(repo: Path) -> dict:
    from tasks.common import load_params

    path = repo / "params" / "benchmark.yaml"
    return load_params(path, "benchmark") if path.is_file() else {}
