"""Shared plumbing for stage entry points: params loading and the CLI skeleton."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from asr_core.io.atomic import atomic_write_json


def load_params(path: str | Path, key: str) -> dict[str, Any]:
    """Read ``key`` from a params YAML file; errors name the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: invalid YAML: {e}") from e
    if key not in data or not isinstance(data[key], dict):
        raise ValueError(f"{path}: missing mapping '{key}:' (found keys: {sorted(data)})")
    return data[key]


def pick(section: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    value = section.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where}.{name} must be a mapping, got {type(value).__name__}")
    return value


def write_report(path: str | Path, report: dict[str, Any]) -> None:
    """The stage's metrics file (declared in dvc.yaml), written atomically."""
    atomic_write_json(path, report)


def stage_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", required=True, help="params YAML file of this stage")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(2)


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
