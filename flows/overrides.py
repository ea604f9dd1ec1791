"""Flow parameters that override params values for one flow run.

An override ``train.loop.max_steps`` goes into ``params/train.yaml`` of the run's own workspace
(flows/workspace.py), never of the user's checkout, so ``dvc repro`` there sees it as an ordinary
param and the run's ``dvc.lock`` and DVC experiment record the values its outputs were made with.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


def split_key(key: str) -> tuple[str, list[str]]:
    """``"train.loop.max_steps"`` -> ``("params/train.yaml", ["train", "loop", "max_steps"])``."""
    parts = key.split(".")
    if len(parts) < 2 or not all(parts):
        raise ValueError(f"override {key!r}: expected <stage>.<field>[.<field>...], e.g. train.loop.max_steps")
    return f"params/{parts[0]}.yaml", parts


def apply_to(data: dict, parts: list[str], value: Any, where: str) -> None:
    node = data
    for i, p in enumerate(parts[:-1]):
        if not isinstance(node.get(p), dict):
            raise ValueError(
                f"{where}: override {'.'.join(parts)!r}: "
                f"{'.'.join(parts[: i + 1])!r} is not a mapping in the params file"
            )
        node = node[p]
    node[parts[-1]] = copy.deepcopy(value)


def plan(repo: Path, overrides: Mapping[str, Any]) -> dict[str, dict]:
    """The new content of every params file the overrides touch (validated, nothing written)."""
    out: dict[str, dict] = {}
    for key, value in overrides.items():
        rel, parts = split_key(key)
        path = repo / rel
        if not path.is_file():
            raise FileNotFoundError(f"override {key!r}: params file {rel} not found")
        if rel not in out:
            out[rel] = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        apply_to(out[rel], parts, value, rel)
    return out


def rendered(repo: Path, overrides: Mapping[str, Any]) -> dict[str, str]:
    """The new text of every params file the overrides touch, with a first line saying so."""
    header = f"# overridden by a flow run: {json.dumps(dict(overrides), sort_keys=True)}\n"
    return {rel: header + yaml.safe_dump(data, sort_keys=False) for rel, data in plan(repo, overrides).items()}
