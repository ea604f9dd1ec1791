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

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows import config
from flows.params import training_overrides
from flows.pipeline import prefect_context, run_name, run_training
from flows.pretrain_wav2vec2 import pretrain_wav2vec2
from flows.workspace import create as create_workspace
from flows.workspace import find_output
from flows.workspace import release as release_workspace


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
    ws = None
    if pretrain:  # both runs in one workspace: the fine-tuning starts from the pre-training's output
        keep = int(config.load()["flows"]["keep_workspaces"])
        ws = create_workspace(Path.cwd(), run_name(prefect_context(), "finetune-wav2vec2"), keep=keep)
        summary["pretrain"] = pretrain_wav2vec2(
            preset=preset,
            max_steps=pretrain_max_steps,
            ray_workers=ray_workers,
            loader_workers=loader_workers,
            source=source,
            workspace=str(ws.path),
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
    if ws is None:  # a separate run: the pre-training output from the checkout or the newest run workspace
        rel = requested.get("train.model.init_from", (requested.get("train.model") or {}).get("init_from"))
        if isinstance(rel, str) and not Path(rel).is_absolute():
            found = find_output(Path.cwd(), rel)
            if found is not None:
                requested["train.model.init_from"] = str(found)
                get_run_logger().info(f"init_from {rel}: {found}")
    summary.update(
        run_training("finetune-wav2vec2", "wav2vec2", requested, stages=stages, register=register_model, workspace=ws)
    )
    if ws is not None:
        release_workspace(ws)
    return summary
