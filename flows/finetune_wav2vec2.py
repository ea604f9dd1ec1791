"""Flow ``finetune-wav2vec2``: CTC fine-tuning of a pre-trained wav2vec 2.0 encoder through the whole
pipeline (download -> prepare -> tokenizer -> train -> evaluate -> export -> benchmark), then the
registry (``asr-wav2vec2``).

Defaults: ``params/profiles/wav2vec2.yaml`` (family ``wav2vec2``), starting from
``models/wav2vec2_pretrain/model.pt`` (the ``pretrain-wav2vec2`` flow's output; ``init_from`` for
another file, our format or fairseq's). ``pretrain=True`` runs ``pretrain-wav2vec2`` first, as a
subflow with the same preset. Examples::

    prefect deployment run finetune-wav2vec2/default --param max_steps=1500
    prefect deployment run finetune-wav2vec2/default --param pretrain=true --param pretrain_max_steps=1500
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.params import training_overrides
from flows.pipeline import run_training
from flows.pretrain_wav2vec2 import pretrain_wav2vec2


@flow(name="finetune-wav2vec2", log_prints=True)
def finetune_wav2vec2(
    preset: str | None = None,
    name: str | None = None,
    max_steps: int | None = None,
    init_from: str | None = None,
    pretrain: bool = False,
    pretrain_max_steps: int | None = None,
    ray_workers: int | None = None,
    loader_workers: int | None = None,
    source: str | None = None,
    overrides: dict[str, Any] | None = None,
    stages: list[str] | None = None,
    register_model: bool = True,
) -> dict[str, Any]:
    """Fine-tune the profile's model (or ``preset``) from ``init_from`` (default: the profile's)."""
    summary: dict[str, Any] = {}
    if pretrain:
        summary["pretrain"] = pretrain_wav2vec2(
            preset=preset,
            max_steps=pretrain_max_steps,
            ray_workers=ray_workers,
            loader_workers=loader_workers,
            source=source,
        )
    requested = training_overrides(
        "wav2vec2",
        preset=preset,
        name=name,
        max_steps=max_steps,
        ray_workers=ray_workers,
        loader_workers=loader_workers,
        source=source,
        overrides=overrides,
    )
    if init_from is not None:
        requested["train.model.init_from"] = init_from
    return {
        **summary,
        **run_training("finetune-wav2vec2", "wav2vec2", requested, stages=stages, register=register_model),
    }
