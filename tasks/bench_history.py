"""Nightly regression check: a benchmark's metrics against the previous runs in MLflow.

    python -m tasks.bench_history --report reports/benchmark.json --params params/benchmark.yaml \
        [--experiment benchmark-nightly] [--out reports/benchmark/regression.md]

Exit status 1 when a metric regressed beyond its threshold (``benchmark.regression`` in
params: by default median RTFx more than 10% worse, or any WER change). The flow calls
:func:`compare_with_history`. Earlier runs are the FINISHED ``benchmark`` stage runs of the
experiment for the same model on the same machine (tags ``bench.model``, ``bench.machine``),
newest first; the run that produced ``metrics`` (``mlflow_run_id``) is left out. The stage logs
to the experiment named by ``ASR_EXPERIMENT`` (the nightly flow sets ``benchmark-nightly``).
The comparison itself is :mod:`asr_core.bench.regression`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tasks.offline  # noqa: F401


def _regression_params(params: Mapping[str, Any] | None) -> dict:
    p: Mapping[str, Any] = params or {}
    if "benchmark" in p:
        p = p["benchmark"]
    if "regression" in p:
        p = p["regression"]
    return dict(p or {})


def previous_runs(
    experiment: str,
    *,
    tracking_uri: str | None = None,
    machine: str | None = None,
    model: str | None = None,
    exclude_run_id: str | None = None,
    limit: int = 5,
) -> list[dict[str, float]]:
    """Flat metrics of the last ``limit`` finished benchmark runs of ``experiment``, newest first
    (only those tagged with the same ``bench.machine`` and ``bench.model`` when these are given)."""
    import logging

    from mlflow.tracking import MlflowClient

    from tasks.tracking import tracking_uri as default_uri

    logging.getLogger("alembic").setLevel(logging.WARNING)
    client = MlflowClient(tracking_uri=tracking_uri or default_uri())
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string="tags.stage = 'benchmark' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=max(50, 4 * limit),
    )
    out = []
    for r in runs:
        if r.info.run_id == exclude_run_id or not r.data.metrics:  # a stage run that logged nothing
            continue
        if machine and r.data.tags.get("bench.machine") not in (None, machine):
            continue
        if model and r.data.tags.get("bench.model") not in (None, model):
            continue
        out.append(dict(r.data.metrics))
        if len(out) >= limit:
            break
    return out


def compare_with_history(
    metrics: dict, *, params: dict, tracking_uri: str | None = None, experiment: str = "benchmark-nightly"
) -> dict:
    """``metrics``: a benchmark report (``reports/benchmark.json``) or its flat ``<cell>/<metric>`` form.

    Returns ``{"regressed", "findings": [{cell, metric, old, new, change, ...}], "report_md", "rows",
    "compared", "new_cells", "history_runs"}``.
    """
    from asr_core.bench.measure import machine_id
    from asr_core.bench.regression import compare, flat_metrics, parse_rules, report_markdown

    reg = _regression_params(params)
    unknown = sorted(set(reg) - {"history_runs", "rules"})
    if unknown:
        raise ValueError(f"benchmark.regression: unknown key(s) {unknown}; known: ['history_runs', 'rules']")
    rules = parse_rules(reg.get("rules"))
    history_runs = int(reg.get("history_runs", 5))
    is_report = "cells" in metrics
    current = flat_metrics(metrics) if is_report else {k: float(v) for k, v in metrics.items()}
    machine = machine_id(metrics["machine"]) if is_report and "machine" in metrics else None
    model = str(metrics["model"]) if is_report and "model" in metrics else None
    history = previous_runs(
        experiment,
        tracking_uri=tracking_uri,
        machine=machine,
        model=model,
        exclude_run_id=metrics.get("mlflow_run_id") if is_report else None,
        limit=history_runs,
    )
    result = compare(current, history, rules, history_runs=history_runs)
    result["report_md"] = report_markdown(result, title=f"Benchmark regression check ({experiment})")
    return result


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--report", default="reports/benchmark.json", help="the benchmark stage's metrics JSON")
    p.add_argument("--params", default="params/benchmark.yaml")
    p.add_argument("--experiment", default="benchmark-nightly")
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--out", default=None, help="write the Markdown report here too")
    args = p.parse_args(argv)
    from tasks.common import load_params

    report_path = Path(args.report)
    if not report_path.is_file():
        p.error(f"benchmark report not found: {report_path}")
    try:
        metrics = json.loads(report_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        p.error(f"{report_path}: invalid JSON: {e}")
    result = compare_with_history(
        metrics,
        params=load_params(args.params, "benchmark"),
        tracking_uri=args.tracking_uri,
        experiment=args.experiment,
    )
    if args.out:
        from asr_core.io.atomic import atomic_write_text

        atomic_write_text(args.out, result["report_md"])
    print(result["report_md"], end="")
    sys.stdout.flush()
    if result["regressed"]:
        raise SystemExit(1)
    return result


if __name__ == "__main__":
    main()
