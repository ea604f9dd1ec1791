"""Nightly regression detection: compare a benchmark's metrics with earlier runs' (pure logic).

Metrics are keyed ``<cell>/<metric>``, a cell being ``cpu/openvino_bf16/bs1/7s`` (timings) or
``cpu/openvino_bf16`` (the runner's WER); that flat form is what the benchmark stage logs to
MLflow. Each rule names a metric, which way is better and how much change is tolerated:

    rtfx: {better: higher, max_change: 0.10}   # regressed when >10% below the baseline
    wer:  {better: equal,  max_change: 0.0}    # regressed on any change (absolute)

The baseline of a metric is the median of its values over the last ``history_runs`` runs
that have it (newest first), so one noisy night neither hides nor raises a regression.
Reading the runs from MLflow is ``tasks/bench_history.py``'s job.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from statistics import median

DEFAULT_RULES = {"rtfx": {"better": "higher", "max_change": 0.10}, "wer": {"better": "equal", "max_change": 0.0}}
_BETTER = ("higher", "lower", "equal")
_EPS = 1e-9


@dataclass(frozen=True)
class Rule:
    better: str
    max_change: float

    def __post_init__(self) -> None:
        if self.better not in _BETTER:
            raise ValueError(f"regression rule: better must be one of {_BETTER}, got {self.better!r}")
        if not self.max_change >= 0:
            raise ValueError(f"regression rule: max_change must be >= 0, got {self.max_change}")

    def change(self, old: float, new: float) -> float:
        """Relative change for higher/lower-is-better metrics, absolute for ``equal``."""
        if self.better == "equal":
            return new - old
        return (new - old) / abs(old) if old else (0.0 if new == old else math.copysign(math.inf, new - old))

    def regressed(self, change: float) -> bool:
        if self.better == "higher":
            return change < -self.max_change - _EPS
        if self.better == "lower":
            return change > self.max_change + _EPS
        return abs(change) > self.max_change + _EPS


@dataclass(frozen=True)
class Finding:
    cell: str
    metric: str
    old: float
    new: float
    change: float
    regressed: bool
    rule: str
    baseline_runs: int


def parse_rules(section: Mapping | None) -> dict[str, Rule]:
    """``{metric: {better, max_change}}`` from params (``benchmark.regression.rules``)."""
    raw = DEFAULT_RULES if section is None else section
    if not isinstance(raw, Mapping) or not raw:
        raise ValueError(f"benchmark.regression.rules must be a non-empty mapping, got {raw!r}")
    rules = {}
    for metric, r in raw.items():
        if not isinstance(r, Mapping) or set(r) - {"better", "max_change"}:
            raise ValueError(f"benchmark.regression.rules.{metric}: expected {{better, max_change}}, got {r!r}")
        rules[metric] = Rule(str(r.get("better", "higher")), float(r.get("max_change", 0.0)))
    return rules


def flat_metrics(report: Mapping) -> dict[str, float]:
    """A benchmark report (``reports/benchmark.json``) -> ``{"<cell>/<metric>": value}``."""
    out: dict[str, float] = {}
    for cell, stats in (report.get("cells") or {}).items():
        for k, v in stats.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[f"{cell}/{k}"] = float(v)
    for runner, w in (report.get("wer") or {}).items():
        if isinstance(w, (int, float)) and not isinstance(w, bool):
            out[f"{runner}/wer"] = float(w)
    return out


def split_key(key: str) -> tuple[str, str]:
    cell, _, metric = key.rpartition("/")
    return cell, metric


def compare(
    current: Mapping[str, float],
    history: list[Mapping[str, float]],
    rules: Mapping[str, Rule],
    *,
    history_runs: int = 5,
) -> dict:
    """Compare ``current`` flat metrics with ``history`` (flat metrics of earlier runs, newest first).

    Returns ``{"regressed", "findings" (the regressions), "rows" (every comparison), "compared",
    "new_cells" (metrics no earlier run has), "history_runs"}``.
    """
    window = list(history)[: max(1, int(history_runs))]
    rows, new_cells = [], []
    for key in sorted(current):
        cell, metric = split_key(key)
        rule = rules.get(metric)
        if rule is None or not math.isfinite(current[key]):
            continue
        olds = [h[key] for h in window if key in h and math.isfinite(h[key])]
        if not olds:
            new_cells.append(key)
            continue
        old = float(median(olds))
        change = rule.change(old, float(current[key]))
        rows.append(
            Finding(
                cell,
                metric,
                round(old, 6),
                round(float(current[key]), 6),
                round(change, 6) if math.isfinite(change) else change,
                rule.regressed(change),
                f"{rule.better} <= {rule.max_change:g}",
                len(olds),
            )
        )
    findings = [r for r in rows if r.regressed]
    return {
        "regressed": bool(findings),
        "findings": [asdict(f) for f in findings],
        "rows": [asdict(r) for r in rows],
        "compared": len(rows),
        "new_cells": new_cells,
        "history_runs": len(window),
    }


def report_markdown(result: Mapping, *, title: str = "Benchmark regression check") -> str:
    """The comparison as Markdown: verdict, then one table row per regression."""
    lines = [f"# {title}", ""]
    if result["history_runs"] == 0:
        lines.append("No earlier run to compare with: this run becomes the baseline.")
        return "\n".join(lines) + "\n"
    verdict = "REGRESSED" if result["regressed"] else "no regression"
    lines += [
        f"**{verdict}**: {result['compared']} metrics compared with the median of up to "
        f"{result['history_runs']} earlier runs; {len(result['findings'])} beyond threshold, "
        f"{len(result['new_cells'])} new.",
        "",
    ]
    if result["findings"]:
        lines += ["| cell | metric | old (median) | new | change | rule |", "|---|---|---|---|---|---|"]
        for f in result["findings"]:
            change = f"{100 * f['change']:+.1f}%" if not f["rule"].startswith("equal") else f"{f['change']:+.6g}"
            lines.append(
                f"| `{f['cell']}` | {f['metric']} | {f['old']:.6g} | {f['new']:.6g} | {change} | {f['rule']} |"
            )
    return "\n".join(lines) + "\n"
