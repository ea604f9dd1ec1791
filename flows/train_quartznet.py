"""Flow ``train-quartznet``: download -> prepare -> tokenizer -> train -> evaluate -> export -> benchmark,
then registration of the exported model (alias ``candidate``; ``champion`` if its WER is lower).

Every parameter left ``None`` keeps the committed params value. Example::

    prefect deployment run train-quartznet/default --param max_steps=400 --param preset=5x5
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.params import training_overrides
from flows.pipeline import run_training


@flow(name="train-quartznet", log_prints=True)
def train_quartznet(
    preset: str | None = None,
    name: str | None = None,
    max_steps: int | None = None,
    ray_workers: int | None = None,
    loader_workers: int | None = None,
    source: str | None = None,
    overrides: dict[str, Any] | None = None,
    stages: list[str] | None = None,
    register_model: bool = True,
) -> dict[str, Any]:
    """QuartzNet ``preset`` (tiny | 5x5 | 10x5 | 15x5); ``overrides``: {"train.loop.max_steps": 4, ...}."""
    requested = training_overrides(
        "quartznet",
        preset=preset,
        name=name,
        max_steps=max_steps,
        ray_workers=ray_workers,
        loader_workers=loader_workers,
        source=source,
        overrides=overrides,
    )
    return run_training("train-quartznet", "quartznet", requested, stages=stages, register=register_model)
