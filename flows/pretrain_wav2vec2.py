"""Flow ``pretrain-wav2vec2``: download -> prepare -> (tokenizer) -> train with the wav2vec 2.0
pre-training profile (``params/profiles/wav2vec2_pretrain.yaml``, family ``wav2vec2_pretrain``).

The contrastive task needs no transcripts and gives no WER: no evaluate / export / benchmark stage
and nothing registered. Its ``models/<train.name>/model.pt`` (default ``models/wav2vec2_pretrain``)
is what ``finetune-wav2vec2`` starts from. Example::

    prefect deployment run pretrain-wav2vec2/default --param max_steps=1500
    prefect deployment run pretrain-wav2vec2/default --param 'overrides={"train.model.overrides": {"hourglass": "[1, (2, 4), 1]"}}'
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.params import training_overrides
from flows.pipeline import run_training
from flows.workspace import existing

PRETRAIN_STAGES = ["download", "prepare", "train"]  # the train stage's upstream (tokenizer) is added by DVC's DAG


@flow(name="pretrain-wav2vec2", log_prints=True)
def pretrain_wav2vec2(
    preset: str | None = None,
    name: str | None = None,
    max_steps: int | None = None,
    ray_workers: int | None = None,
    loader_workers: int | None = None,
    source: str | None = None,
    overrides: dict[str, Any] | None = None,
    stages: list[str] | None = None,
    workspace: str | None = None,
) -> dict[str, Any]:
    """The pre-training profile (or ``preset``: tiny | small | base | large). ``workspace``: an existing
    run workspace to run in and leave (``finetune-wav2vec2 --param pretrain=true`` passes its own)."""
    requested = training_overrides(
        "wav2vec2_pretrain",
        preset=preset,
        name=name,
        max_steps=max_steps,
        ray_workers=ray_workers,
        loader_workers=loader_workers,
        source=source,
        overrides=overrides,
    )
    return run_training(
        "pretrain-wav2vec2",
        "wav2vec2_pretrain",
        requested,
        stages=stages or PRETRAIN_STAGES,
        register=False,
        workspace=existing(workspace),
    )
