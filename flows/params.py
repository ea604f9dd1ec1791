"""Flow parameters -> ``{"<stage>.<field>...": value}`` params overrides (see flows/overrides.py)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

PROFILES = Path("params") / "profiles"


def profile(repo: Path, family: str) -> dict[str, Any] | None:
    """``params/profiles/<family>.yaml``'s ``train:`` section (a family's own training defaults:
    features, data, optimizer, loop), or None when the family trains from ``params/train.yaml``
    with only the model switched (Jasper)."""
    path = repo / PROFILES / f"{family}.yaml"
    if not path.is_file():
        return None
    section = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("train")
    if not isinstance(section, dict) or not isinstance(section.get("model"), dict):
        raise ValueError(f"{path}: expected a 'train:' mapping with a 'model:' mapping (a complete train section)")
    return section


def model_overrides(repo: Path, family: str, preset: str | None, name: str | None) -> dict[str, Any]:
    """A family other than the committed one starts from its profile (``params/profiles/<family>.yaml``,
    every top-level key of the train section overridden, and those it lacks nulled), if it has one. A family or preset other
    than the committed one starts from the preset as published (``train.model.overrides: {}``,
    unless the profile gives some) and writes to ``models/<family>_<preset>``."""
    path = repo / "params" / "train.yaml"
    committed = yaml.safe_load(path.read_text(encoding="utf-8"))["train"]
    model = committed["model"]
    out: dict[str, Any] = {}
    prof = profile(repo, family) if family != model["family"] else None
    if prof is not None:  # a complete train section: what it does not set is nulled (tasks/train.py: absent)
        out.update({f"train.{k}": None for k in committed if k not in prof})
        out.update({f"train.{k}": v for k, v in prof.items()})
        model = prof["model"]
    out["train.model.family"] = family
    if preset is not None:
        out["train.model.preset"] = preset
    if prof is None and (family, preset or model["preset"]) != (model["family"], model["preset"]):
        out["train.model.overrides"] = {}
        out["train.name"] = f"{family}_{preset or model['preset']}"
    elif prof is not None and preset is not None and preset != model["preset"]:
        out["train.model.overrides"] = {}
        out["train.name"] = f"{family}_{preset}"
    if name is not None:
        out["train.name"] = name
    return out


def training_overrides(
    family: str,
    *,
    preset: str | None,
    name: str | None,
    max_steps: int | None,
    ray_workers: int | None,
    loader_workers: int | None,
    source: str | None,
    overrides: Mapping[str, Any] | None,
    repo: Path | None = None,
) -> dict[str, Any]:
    """The named flow parameters first, then ``overrides`` (which win)."""
    out = model_overrides(repo or Path.cwd(), family, preset, name)
    named = {
        "train.loop.max_steps": max_steps,
        "train.ray.num_workers": ray_workers,
        "train.data.num_workers": loader_workers,
        "download.source": source,
    }
    out.update({k: v for k, v in named.items() if v is not None})
    if max_steps is not None:  # the flow's length wins over a profile's length in epochs
        out["train.loop.max_epochs"] = None
    out.update(overrides or {})
    if max_steps is not None and not any(k.startswith("train.optim") for k in overrides or {}):
        out.update(_fit_warmup(repo or Path.cwd(), out, max_steps))
    return out


def _fit_warmup(repo: Path, planned: Mapping[str, Any], max_steps: int) -> dict[str, Any]:
    """A short run asked for by the ``max_steps`` flow parameter (a smoke run) gets a warm-up that fits:
    a tenth of its steps and no hold, where the schedule's own warm-up + hold (in steps) is longer.
    Given as overrides, so the run's log, MLflow and ``dvc.lock`` show them."""
    from flows.overrides import plan

    train = (plan(repo, planned).get("params/train.yaml") or {}).get("train") or {}
    sched = ((train.get("optim") or {}).get("schedule")) or {}
    if sched.get("name") not in ("polynomial", "legacy", "tri_stage"):
        return {}
    if any(sched.get(k) for k in ("warmup_epochs", "hold_epochs", "warmup_ratio", "hold_ratio")):
        return {}
    if int(sched.get("warmup_steps") or 0) + int(sched.get("hold_steps") or 0) <= max_steps:
        return {}
    out = {"train.optim.schedule.warmup_steps": max_steps // 10}
    if sched.get("hold_steps"):
        out["train.optim.schedule.hold_steps"] = 0
    return out
