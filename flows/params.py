"""Flow parameters -> ``{"<stage>.<field>...": value}`` params overrides (see flows/overrides.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import yaml


def model_overrides(repo: Path, family: str, preset: str | None, name: str | None) -> dict[str, Any]:
    """A family or preset other than the committed one starts from the preset as published
    (``train.model.overrides: {}``) and writes to ``models/<family>_<preset>``."""
    path = repo / "params" / "train.yaml"
    model = yaml.safe_load(path.read_text(encoding="utf-8"))["train"]["model"]
    out: dict[str, Any] = {"train.model.family": family}
    if preset is not None:
        out["train.model.preset"] = preset
    if (family, preset or model["preset"]) != (model["family"], model["preset"]):
        out["train.model.overrides"] = {}
        out["train.name"] = f"{family}_{preset or model['preset']}"
    if name is not None:
        out["train.name"] = name
    return out


def training_overrides(family: str, *, preset: str | None, name: str | None, max_steps: int | None,
                       ray_workers: int | None, loader_workers: int | None, source: str | None,
                       overrides: Mapping[str, Any] | None, repo: Path | None = None) -> dict[str, Any]:
    """The named flow parameters first, then ``overrides`` (which win)."""
    out = model_overrides(repo or Path.cwd(), family, preset, name)
    named = {"train.loop.max_steps": max_steps, "train.ray.num_workers": ray_workers,
             "train.data.num_workers": loader_workers, "download.source": source}
    out.update({k: v for k, v in named.items() if v is not None})
    out.update(overrides or {})
    return out
