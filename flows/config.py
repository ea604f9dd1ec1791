"""``params/flows.yaml``: deployment names, stage lists, the nightly schedule, registry names, servers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

FLOWS_PARAMS = Path("params") / "flows.yaml"
REPO = Path(__file__).resolve().parents[1]


def load(repo: str | Path | None = None) -> dict[str, Any]:
    """The whole file; errors name the file and the missing field."""
    path = Path(repo or Path.cwd()) / FLOWS_PARAMS
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run from the repository root")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: invalid YAML: {e}") from e
    for section, fields in {
        "flows": (
            "deployments",
            "concurrent_runs",
            "keep_workspaces",
            "stages",
            "download_retries",
            "download_retry_delay_s",
            "nightly",
            "registry",
            "wer_splits",
        ),
        "servers": ("state_dir", "host", "prefect_port", "mlflow_port", "start_timeout_s"),
    }.items():
        if not isinstance(data.get(section), dict):
            raise ValueError(f"{path}: missing mapping '{section}:'")
        missing = [f for f in fields if f not in data[section]]
        if missing:
            raise ValueError(f"{path}: '{section}:' lacks {missing}")
    n = data["flows"]["concurrent_runs"]
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"{path}: flows.concurrent_runs must be an integer >= 1, got {n!r}")
    nightly = data["flows"]["nightly"]
    for f in ("cron", "timezone", "stages"):
        if f not in nightly:
            raise ValueError(f"{path}: 'flows.nightly' lacks {f!r}")
    return data
