"""Flow ``train-rnnt``: the training pipeline (download -> prepare -> tokenizer -> train -> evaluate
-> export -> benchmark, then the registry) for the RNN-Transducer.

The family's defaults come from ``params/profiles/rnnt.yaml`` (flows/params.py applies that
``train:`` section over ``params/train.yaml`` for the length of the run and restores it after).
Presets: ``tiny`` (the profile's small CPU transducer), ``e4d1`` (3.3 M), ``e6d2`` (50.8 M;
set ``overrides={"train.ray.use_gpu": true, ...}`` on GPUs). Example::

    prefect deployment run train-rnnt/default --param max_steps=300
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.params import training_overrides
from flows.pipeline import run_training


@flow(name="train-rnnt", log_prints=True)
def train_rnnt(
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
    """The profile's transducer (or ``preset``); outputs under ``models/<train.name>``."""
    requested = training_overrides(
        "rnnt",
        preset=preset,
        name=name,
        max_steps=max_steps,
        ray_workers=ray_workers,
        loader_workers=loader_workers,
        source=source,
        overrides=overrides,
    )
    return run_training("train-rnnt", "rnnt", requested, stages=stages, register=register_model)
