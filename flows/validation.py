"""Flow parameters and params overrides, checked before any stage runs.

A flow run that would fail in its train stage after the data stages and Ray start-up fails here
instead, in seconds, with the parameter named: an unknown key, a value of the wrong type, a train
section its recipe rejects (``max_steps`` shorter than the schedule's warm-up, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from flows.overrides import plan, split_key


class FlowParamsError(ValueError):
    """A flow parameter or override the params cannot take; the message names it."""


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, Mapping):
        return "mapping"
    if isinstance(v, (list, tuple)):
        return "list"
    return type(v).__name__


def _check_key(repo: Path, key: str, value: Any, committed_cache: dict[str, dict]) -> None:
    """Outside ``train.*`` (whose recipe config checks it), a key must exist in the committed params
    file and keep the committed value's kind (a null there takes anything)."""
    rel, parts = split_key(key)
    if rel not in committed_cache:
        committed_cache[rel] = yaml.safe_load((repo / rel).read_text(encoding="utf-8")) or {}
    node: Any = committed_cache[rel]
    for i, p in enumerate(parts):
        if not isinstance(node, Mapping) or p not in node:
            where = ".".join(parts[:i]) or rel
            known = sorted(node) if isinstance(node, Mapping) else []
            raise FlowParamsError(f"override {key!r}: {rel} has no {'.'.join(parts[: i + 1])!r}; {where} has {known}")
        node = node[p]
    if node is not None and value is not None and _kind(node) != _kind(value):
        raise FlowParamsError(
            f"override {key!r}: expected a {_kind(node)} like the committed value {node!r}, "
            f"got {_kind(value)} {value!r}"
        )


def validate(repo: Path, overrides: Mapping[str, Any]) -> dict[str, dict]:
    """The params files as the run will see them (``{rel path: content}`` of those overridden);
    raises :class:`FlowParamsError` naming the first parameter they cannot take."""
    try:
        new = plan(repo, overrides)
    except (ValueError, FileNotFoundError) as e:
        raise FlowParamsError(str(e)) from None
    committed: dict[str, dict] = {}
    for key, value in overrides.items():
        if not key.startswith("train."):
            _check_key(repo, key, value, committed)
    train_yaml = new.get("params/train.yaml")
    if train_yaml is not None:
        from tasks.train import check_section

        try:
            check_section(dict(train_yaml["train"]))
        except (ValueError, TypeError, KeyError) as e:
            given = sorted(k for k in overrides if k.startswith("train."))
            raise FlowParamsError(f"train params after the overrides {given}: {e}") from None
    return new
