"""The long-lived process serving every deployment (``python -m flows.serve``, started by
``python -m flows.servers start``). It needs ``PREFECT_API_URL`` and runs from the repository
root. Up to ``flows.concurrent_runs`` flow runs at once (params/flows.yaml): each runs in a
workspace of its own (flows/workspace.py), so runs neither share DVC's workspace lock nor touch
the user's working tree.

Deployments (names in ``params/flows.yaml``)::

    train-quartznet/default     prefect deployment run train-quartznet/default
    train-jasper/default        prefect deployment run train-jasper/default
    train-rnnt/default          prefect deployment run train-rnnt/default
    pretrain-wav2vec2/default   prefect deployment run pretrain-wav2vec2/default
    finetune-wav2vec2/default   prefect deployment run finetune-wav2vec2/default
    benchmark-nightly/nightly   cron "0 2 * * *" (flows.nightly), or on demand
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from flows import config


def deployments(repo: Path) -> list:
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    from flows.benchmark_nightly import benchmark_nightly
    from flows.finetune_wav2vec2 import finetune_wav2vec2
    from flows.pretrain_wav2vec2 import pretrain_wav2vec2
    from flows.train_jasper import train_jasper
    from flows.train_quartznet import train_quartznet
    from flows.train_rnnt import train_rnnt

    cfg = config.load(repo)["flows"]
    names, nightly = cfg["deployments"], cfg["nightly"]
    common = {"entrypoint_type": EntrypointType.MODULE_PATH, "tags": ["asr-toolkit"]}
    return [
        train_quartznet.to_deployment(
            name=names["train-quartznet"],
            **common,
            description="download -> ... -> benchmark for a QuartzNet preset, then registry",
        ),
        train_jasper.to_deployment(
            name=names["train-jasper"],
            **common,
            description="download -> ... -> benchmark for a Jasper preset, then registry",
        ),
        train_rnnt.to_deployment(
            name=names["train-rnnt"],
            **common,
            description="download -> ... -> benchmark for the RNN-Transducer, then registry",
        ),
        pretrain_wav2vec2.to_deployment(
            name=names["pretrain-wav2vec2"],
            **common,
            description="download -> prepare -> train: wav2vec 2.0 pre-training",
        ),
        finetune_wav2vec2.to_deployment(
            name=names["finetune-wav2vec2"],
            **common,
            description="wav2vec 2.0 CTC fine-tuning -> evaluate/export/benchmark, registry",
        ),
        benchmark_nightly.to_deployment(
            name=names["benchmark-nightly"],
            **common,
            schedule=Cron(nightly["cron"], timezone=nightly["timezone"]),
            description="benchmark the champion model(s), compare with earlier nights",
        ),
    ]


def main() -> None:
    if not os.environ.get("PREFECT_API_URL"):
        sys.exit("error: PREFECT_API_URL is not set: start the servers with `python -m flows.servers start`")
    from prefect import serve

    repo = Path.cwd()
    serve(*deployments(repo), limit=int(config.load(repo)["flows"]["concurrent_runs"]))


if __name__ == "__main__":
    main()
