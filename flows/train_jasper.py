"""Flow ``train-jasper``: the ``train-quartznet`` pipeline for a Jasper preset (tiny | 10x5).

Jasper 10x5 DR has 332.6 M parameters: on a CPU use ``preset=tiny``; on GPUs set
``overrides={"train.ray.use_gpu": true, ...}``. Example::

    prefect deployment run train-jasper/default --param preset=tiny --param max_steps=200
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.params import training_overrides
from flows.pipeline import run_training


@flow(name="train-jasper", log_prints=True)
def train_jasper(
    preset: str = "tiny",
    name: str | None = None,
    max_steps: int | None = None,
    ray_workers: int | None = None,
    loader_workers: int | None = None,
    source: str | None = None,
    overrides: dict[str, Any] | None = None,
    stages: list[str] | None = None,
    register_model: bool = True,
) -> dict[str, Any]:
    """Jasper ``preset``; outputs under ``models/jasper_<preset>`` unless ``name`` is given."""
    requested = training_overrides(
        "jasper",
        preset=preset,
        name=name,
        max_steps=max_steps,
        ray_workers=ray_workers,
        loader_workers=loader_workers,
        source=source,
        overrides=overrides,
    )
    return run_training("train-jasper", "jasper", requested, stages=stages, register=register_model)
