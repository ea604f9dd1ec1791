"""Stage 4, train: a QuartzNet/Jasper CTC model with Ray Train, checkpoints, MLflow; see params/train.yaml.

Usage::

    python -m tasks.train --params params/train.yaml [--out models] [--report reports/train.json] [--fresh]

Outputs, for ``name: <name>``: ``models/<name>/model.pt`` (the best by dev WER, EMA weights:
what evaluate/transcribe load), ``models/<name>/final.pt`` (the last weights),
``models/<name>/checkpoints/ckpt-<step>.pt``, ``reports/train.json`` and, beside it (or in
``--curves``), ``train_curve.csv`` / ``dev_curve.csv`` for ``dvc plots`` (tasks/train_log.py).

Resume: run the same command again. Our checkpoint folder, not Ray's storage, is the source
of truth: the engine resumes from its latest file (model, optimizer, schedule, scaler, EMA,
sampler position, RNG), so a killed step-bounded run ends exactly as an uninterrupted one.
Runs with a ``max_minutes`` budget stop when the clock says, so they are not bit-reproducible.
The DVC stage passes ``--checkpoints checkpoints``: checkpoints then live in
``checkpoints/<name>/<fingerprint>/`` (git-ignored, not a DVC output, so they survive DVC's
removal of ``models/<name>/`` before the stage runs), one folder per distinct set of params, so
a ``dvc repro`` killed mid-training resumes and one whose params changed starts afresh. When
the run ends its last checkpoint is copied to ``models/<name>/checkpoints/`` and the folder
goes. Without ``--checkpoints`` they are written to ``models/<name>/checkpoints/`` and those
made with other params are refused (``--fresh`` starts over).

Ray Train: always a ``TorchTrainer``. ``ray.num_workers: 0`` runs the loop in this process
(Ray's local mode: fast, no cluster); ``>= 1`` starts that many Ray workers with a
torch.distributed group (gloo on CPU, NCCL with ``use_gpu``), each ``resources_per_worker``.
Without ``address`` a local Ray instance is started (``num_cpus``, no dashboard, capped object
store). Multi-node (a Ray cluster with token authentication, how the joining nodes get the token,
``ray.address``): docs/orchestration.md, "Multi-node". Paths (data, ``models/``, the MLflow store)
must be on storage every node sees at the same path.

MLflow: this process opens the ``train`` stage run (params, artifacts: best and final
``model.pt``, the last checkpoint, the summary); rank 0 logs the per-step loss / lr /
throughput and the per-evaluation dev WER/CER into that run by its id. Only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import tasks.offline  # noqa: F401
from tasks.common import load_params, stage_parser, write_report

RAY_DEFAULTS: dict[str, Any] = {
    "address": None,
    "num_workers": 0,
    "use_gpu": False,
    "resources_per_worker": None,
    "num_cpus": None,
    "object_store_mb": 256,
    "torch_threads": None,
    "storage_path": None,
}
log = logging.getLogger("tasks.train")  # not print(): Ray Train tees a worker's print to two places
TOP_KEYS = {"name", "seed", "model", "features", "data", "augment", "optim", "decoding", "loop", "ray"}


# -- the loop each Ray worker runs -------------------------------------------------------------


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    from asr_core.train.precision import flush_denormals

    flush_denormals()  # first: a Ray worker's intra-op threads start after this (asr_core.train.precision)
    import torch

    from asr_core.train.engine import TrainConfig, dist_info, train
    from asr_core.train.recipes import recipe_classes

    if config["torch_threads"]:
        torch.set_num_threads(int(config["torch_threads"]))
    rank, world = dist_info()
    device = torch.device("cpu")
    if config["use_gpu"]:
        import ray.train.torch

        device = ray.train.torch.get_device()
    loop = TrainConfig.from_dict({**config["loop"], "seed": config["seed"]})
    recipe_cls, config_cls = recipe_classes(config["family"], config.get("head"))
    recipe = recipe_cls(
        config_cls.from_dict(config["recipe"]),
        max_steps=loop.max_steps,
        max_epochs=loop.max_epochs,
        grad_accum=loop.grad_accum,
        seed=config["seed"],
        rank=rank,
        world_size=world,
        device=device,
    )
    if loop.max_epochs is not None:  # the run's length in steps comes from the corpus
        loop = dataclasses.replace(loop, max_steps=recipe.max_steps)
        if rank == 0:
            log.info(
                f"loop.max_epochs {loop.max_epochs}: {recipe.steps_per_epoch} steps an epoch, {loop.max_steps} steps"
            )
    out = Path(config["model_dir"])
    from tasks.train_log import StageLogger

    ckpt_dir = Path(config.get("ckpt_dir") or out / "checkpoints")
    callbacks = [StageLogger(config["run_id"], config["tracking_uri"], ckpt_dir)] if rank == 0 else []
    summary = train(
        loop,
        recipe,
        ckpt_dir,
        callbacks,
        best_model_path=out / "model.pt",
        final_model_path=out / "final.pt",
    )
    summary["num_parameters"] = sum(p.numel() for p in recipe.model.parameters())
    summary["steps_per_epoch"] = recipe.steps_per_epoch
    return summary


# -- the driver --------------------------------------------------------------------------------


PATH_KEYS = ("train_manifest", "dev_manifest", "vocab")  # train.data keys holding paths (made absolute)


def _absolute(recipe: dict[str, Any]) -> dict[str, Any]:
    data = dict(recipe.get("data") or {})
    for k in PATH_KEYS:
        if data.get(k):
            data[k] = str(Path(data[k]).resolve())
    model = dict(recipe.get("model") or {})
    if model.get("init_from"):  # the model to start from (transfer; wav2vec 2.0: the pre-trained one)
        model["init_from"] = str(Path(model["init_from"]).resolve())
    return {**recipe, "data": data, **({"model": model} if "model" in recipe else {})}


def _check_resumable(model_dir: Path, ckpt_dir: Path, fingerprint: dict[str, Any], fresh: bool) -> None:
    """Refuse to resume checkpoints made with other params (they would load, or fail, confusingly)."""
    if fresh and model_dir.exists():
        shutil.rmtree(model_dir)
    record = ckpt_dir / "params.json"
    if record.is_file() and any(ckpt_dir.glob("ckpt-*.pt")):
        saved = json.loads(record.read_text(encoding="utf-8"))
        if saved != fingerprint:
            diff = sorted(k for k in set(saved) | set(fingerprint) if saved.get(k) != fingerprint.get(k))
            raise ValueError(
                f"{ckpt_dir} holds checkpoints made with other params (differing: {diff}); "
                f"run with --fresh to start over, or use another name"
            )
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(fingerprint, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def run(
    section: dict[str, Any],
    out_root: Path,
    run_id: str | None = None,
    tracking_uri: str | None = None,
    fresh: bool = False,
    checkpoints: Path | None = None,
) -> dict[str, Any]:
    """Train as ``section`` says; returns rank 0's summary. ``run_id``: the MLflow run rank 0 logs into.

    With ``checkpoints`` (the stage's ``--checkpoints`` root), the run's last checkpoint is copied
    into ``models/<name>/checkpoints/`` when it ends and its folder under the root is removed."""
    config, ray_cfg, name = worker_config(section, out_root, run_id, tracking_uri, fresh, checkpoints)
    summary = _fit(config, ray_cfg, name)
    if checkpoints is not None:
        _keep_last_checkpoint(Path(config["ckpt_dir"]), Path(config["model_dir"]) / "checkpoints")
    return summary


def _keep_last_checkpoint(ckpt_dir: Path, dest: Path) -> None:
    """The finished run's last checkpoint (and its params record) into the model folder; then the
    resumable folder goes: a finished run is DVC's output now, restored by DVC, not resumed."""
    from asr_core.io.atomic import atomic_copy
    from asr_core.train.checkpoint import latest_checkpoint
    from tasks.train_log import CURVES

    last = latest_checkpoint(ckpt_dir)
    if last is not None:
        dest.mkdir(parents=True, exist_ok=True)
        for f in (last, ckpt_dir / "params.json", *(ckpt_dir / c for c in CURVES)):
            if f.is_file():
                atomic_copy(f, dest / f.name)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        ckpt_dir.parent.rmdir()  # <root>/<name>/ when no other fingerprint is in progress


def check_section(section: dict[str, Any]) -> dict[str, Any]:
    """Every check a train section can get without data or Ray: keys, the recipe's typed config,
    the loop, the ray params and the schedule's length. Returns the parts the stage needs.

    A key set to null is absent (a flow's profile nulls the committed keys it does not set).
    The flows call this before any stage runs, so a bad override fails in seconds."""
    section = {k: v for k, v in section.items() if v is not None}
    unknown = sorted(set(section) - TOP_KEYS)
    if unknown:
        raise ValueError(f"train: unknown key(s) {unknown}; known: {sorted(TOP_KEYS)}")
    from asr_core.train.engine import TrainConfig
    from asr_core.train.recipes import recipe_classes

    recipe = {k: section[k] for k in ("model", "features", "data", "augment", "optim", "decoding") if k in section}
    family = str((section.get("model") or {}).get("family", "quartznet"))
    head = (section.get("model") or {}).get("head")
    cfg = recipe_classes(family, head)[1].from_dict(recipe)
    loop = dict(section.get("loop") or {})
    seed = int(section.get("seed", 0))
    loop_cfg = TrainConfig.from_dict({**loop, "seed": seed})
    if loop_cfg.max_epochs is None:  # a length in epochs needs the corpus: checked when training starts
        _check_schedule(cfg.optim.schedule, loop_cfg.max_steps // max(1, loop_cfg.grad_accum))
    ray_cfg = {**RAY_DEFAULTS, **(section.get("ray") or {})}
    unknown = sorted(set(ray_cfg) - set(RAY_DEFAULTS))
    if unknown:
        raise ValueError(f"train.ray: unknown key(s) {unknown}; known: {sorted(RAY_DEFAULTS)}")
    return {
        "section": section,
        "name": str(section.get("name") or "model"),
        "seed": seed,
        "family": family,
        "head": head,
        "recipe": recipe,
        "loop": loop,
        "ray": ray_cfg,
    }


def _check_schedule(schedule: dict[str, Any], updates: int) -> None:
    """A schedule measured in steps must fit in ``loop.max_steps`` (epoch-measured phases need
    the corpus, so they are checked when training starts)."""
    from asr_core.train.schedule import ScheduleConfig, build_schedule

    sc = ScheduleConfig.from_dict(dict(schedule))
    if sc.name in ("exponential", "plateau") or sc.warmup_epochs or sc.hold_epochs or updates <= 0:
        return
    try:
        build_schedule(sc, 1.0, total_steps=updates)
    except ValueError as e:
        raise ValueError(
            f"train.loop.max_steps={updates}: {e}; raise train.loop.max_steps or lower "
            f"train.optim.schedule.warmup_steps / hold_steps"
        ) from None


def checkpoint_fingerprint(parts: dict[str, Any]) -> dict[str, Any]:
    """What the weights of a step-bounded run depend on: the recipe, the seed, the loop except its
    wall-clock cap and logging cadence, and the worker count. Checkpoints made under another
    fingerprint are never resumed."""
    loop = {k: v for k, v in parts["loop"].items() if k not in ("max_minutes", "log_every")}
    data = parts["recipe"].get("data") or {}
    init = (parts["recipe"].get("model") or {}).get("init_from")
    files = {  # the content, not where the workspace is
        k: _md5(v) for k, v in [*((k, data.get(k)) for k in PATH_KEYS), ("init_from", init)] if v and Path(v).is_file()
    }
    return json.loads(
        json.dumps(
            {
                "recipe": parts["recipe"],
                "data_md5": files,
                "seed": parts["seed"],
                "loop": loop,
                "num_workers": parts["ray"]["num_workers"],
            },
            sort_keys=True,
        )
    )


def _md5(path: str) -> str:
    # not asr_core.data.download.checksums: importing it would make the train stage depend on the download code
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def checkpoint_dir(root: Path, name: str, fingerprint: dict[str, Any]) -> Path:
    """``<root>/<name>/<12 hex of the fingerprint>``: one folder per distinct set of params."""
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:12]
    return (root / name / digest).resolve()


def worker_config(
    section: dict[str, Any],
    out_root: Path,
    run_id: str | None = None,
    tracking_uri: str | None = None,
    fresh: bool = False,
    checkpoints: Path | None = None,
) -> tuple[dict, dict, str]:
    """Check ``section`` and the checkpoint folder; ``(config for train_loop_per_worker, ray params, name)``.

    ``checkpoints``: a root kept outside the stage's output (``<root>/<name>/<fingerprint>/``),
    so that checkpoints survive DVC's removal of ``models/<name>/`` before the stage runs;
    None: ``models/<name>/checkpoints/`` (library use)."""
    parts = check_section(section)
    name, loop, ray_cfg = parts["name"], parts["loop"], parts["ray"]
    model_dir = (out_root / name).resolve()
    fingerprint = checkpoint_fingerprint(parts)
    if checkpoints is None:
        ckpt_dir = model_dir / "checkpoints"
        legacy = {
            "recipe": _absolute(parts["recipe"]),
            "seed": parts["seed"],
            "num_workers": ray_cfg["num_workers"],
            **{k: loop.get(k) for k in ("grad_accum", "precision")},
        }
        _check_resumable(model_dir, ckpt_dir, json.loads(json.dumps(legacy)), fresh)
    else:
        ckpt_dir = checkpoint_dir(checkpoints, name, fingerprint)
        if fresh:
            shutil.rmtree(ckpt_dir, ignore_errors=True)
            shutil.rmtree(model_dir, ignore_errors=True)
        _lock_checkpoints(ckpt_dir)
        _check_resumable(model_dir, ckpt_dir, fingerprint, False)
    config = {
        "family": parts["family"],
        "head": parts["head"],
        "recipe": _absolute(parts["recipe"]),
        "loop": loop,
        "seed": parts["seed"],
        "model_dir": str(model_dir),
        "ckpt_dir": str(ckpt_dir),
        "run_id": run_id,
        "tracking_uri": tracking_uri,
        "use_gpu": bool(ray_cfg["use_gpu"]),
        "torch_threads": ray_cfg["torch_threads"],
    }
    return config, ray_cfg, name


def _trainer_class(base: type, local: bool) -> type:
    """``TorchTrainer`` that leaves Ctrl-C to the stage; for a local Ray, also without the
    PlacementGroupCleaner.

    Ray Train's ``fit`` installs a SIGINT handler that asks its controller for a graceful abort and
    then returns (or exits) however the run happened to end, so a Ctrl-C'd stage could close its
    MLflow run FINISHED or FAILED. Without it SIGINT raises ``KeyboardInterrupt`` here, and the stage
    stops KILLED with its last checkpoint (tasks/lifecycle.py, tasks/tracking.py).

    The cleaner removes a placement group if a Train controller dies without doing so, on a
    long-lived cluster; it asks the State API once a second, which needs the dashboard that a
    local run leaves off (~1 GB less), so every run printed a warning per second. The local
    Ray is shut down with the run, which frees its placement groups anyway. (Ray 2.60 has no
    switch for it: the callback list is filtered by class name.)
    """

    class StageTorchTrainer(base):
        def _register_sigint_handler(self, controller) -> None:
            pass

        def _create_default_callbacks(self):
            callbacks = super()._create_default_callbacks()
            if not local:
                return callbacks
            return [c for c in callbacks if type(c).__name__ != "PlacementGroupCleanerCallback"]

    return StageTorchTrainer


def _fit(config: dict[str, Any], ray_cfg: dict[str, Any], name: str) -> dict[str, Any]:
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    n = int(ray_cfg["num_workers"])
    started = False
    if n > 0 and not ray.is_initialized():
        if ray_cfg["address"]:
            ray.init(address=ray_cfg["address"])
        else:
            # Ray starts its worker processes at nice 15 (raylet's worker_niceness): on a busy
            # machine the training workers, and their data loaders, then lose the CPU to anything
            # else. They are the job here: run them at the driver's priority.
            os.environ.setdefault("RAY_worker_niceness", "0")
            ray.init(
                num_cpus=ray_cfg["num_cpus"] or os.cpu_count(),
                include_dashboard=False,
                object_store_memory=int(ray_cfg["object_store_mb"]) * 2**20,
                log_to_driver=True,
            )
        started = True
        from tasks.lifecycle import handle_signals

        handle_signals()  # ray.init replaced the stage's SIGTERM handler with its own sys.exit(1)
    try:
        trainer_cls = _trainer_class(TorchTrainer, local=started and not ray_cfg["address"])
        trainer = trainer_cls(
            train_loop_per_worker,
            train_loop_config=config,
            scaling_config=ScalingConfig(
                num_workers=n, use_gpu=bool(ray_cfg["use_gpu"]), resources_per_worker=ray_cfg["resources_per_worker"]
            ),
            run_config=RunConfig(name=f"train-{name}", storage_path=ray_cfg["storage_path"]),
        )
        result = trainer.fit()
    finally:
        if started:
            # after Ctrl-C to the process group Ray's own processes may be gone already: the stop
            # (KeyboardInterrupt) is what this stage reports, not a failed shutdown
            with contextlib.suppress(Exception):
                ray.shutdown()
    if not isinstance(result.return_value, dict):
        raise RuntimeError(f"Ray Train returned no summary from rank 0 (got {result.return_value!r})")
    return result.return_value


def report_from(summary: dict[str, Any]) -> dict[str, Any]:
    best, final = summary.get("best_metrics") or {}, summary.get("final_metrics") or {}
    keep = (
        "steps",
        "final_loss",
        "best_step",
        "wall_seconds",
        "train_seconds",
        "sequences_per_s",
        "audio_s_per_s",
        "bad_batches",
        "skipped_utterances",
        "overflow_steps",
        "world_size",
        "epoch",
        "num_parameters",
        "steps_per_epoch",
        "stopped_by",
        "planned_steps",
        "resumed_from",
    )
    rep = {k: summary.get(k) for k in keep}
    rep.update(
        best_dev_wer=best.get("wer"),
        best_dev_cer=best.get("cer"),
        final_dev_wer=final.get("wer"),
        final_dev_cer=final.get("cer"),
    )
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in rep.items()}


def _checkpoint_root(given: str | None) -> Path | None:
    """``ASR_CHECKPOINTS`` wins over ``--checkpoints``: a flow's run workspace keeps its checkpoints
    in the user's checkout, so a cancelled or killed run resumes in the next run's workspace."""
    root = os.environ.get("ASR_CHECKPOINTS") if given else None
    return Path(root or given) if (root or given) else None


_LOCKS: list = []  # held for the life of the process


def _lock_checkpoints(ckpt_dir: Path) -> None:
    """One run per checkpoint folder: two runs of the same params at once would overwrite each other."""
    import fcntl

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    f = open(ckpt_dir / ".lock", "w")  # noqa: SIM115 (kept open: the lock lives as long as the file)
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise RuntimeError(
            f"{ckpt_dir} is in use by another run of the same params (same fingerprint); "
            f"wait for it, or change train.seed / train.name"
        ) from None
    _LOCKS.append(f)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--out", default="models", help="model folders go to <out>/<name>/")
    p.add_argument("--report", default="reports/train.json")
    p.add_argument("--fresh", action="store_true", help="delete <out>/<name>/ first instead of resuming")
    p.add_argument("--name", default=None, help="the model's name (outputs <out>/<name>/), instead of train.name")
    p.add_argument(
        "--checkpoints",
        default=None,
        help="resumable checkpoints under <checkpoints>/<name>/<params fingerprint>/, outside <out>/<name>/ "
        "(DVC deletes a stage's outputs before running it); default: <out>/<name>/checkpoints/",
    )
    p.add_argument(
        "--curves",
        default=None,
        help="folder for train_curve.csv / dev_curve.csv (what dvc plots draws); default: the report's folder",
    )
    args = p.parse_args(argv)
    from asr_core.train.precision import flush_denormals

    flush_denormals()  # before any op starts the intra-op threads (local mode trains in this process)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    section = load_params(args.params, "train")
    if args.name:  # a model of params/models.yaml: its key names it, whatever its params file says
        section = {**section, "name": args.name}
    from tasks.tracking import log_summary_artifact, stage_run, tracking_uri

    out_root = Path(args.out)
    with stage_run("train", {"train": section}, label=str(section.get("name") or "model")) as tr:
        summary = run(
            section,
            out_root,
            run_id=tr.run_id,
            tracking_uri=tracking_uri(),
            fresh=args.fresh,
            checkpoints=_checkpoint_root(args.checkpoints),
        )
        report = report_from(summary)
        tr.log_metrics({k: v for k, v in report.items() if k not in ("steps", "best_step", "resumed_from")})
        model_dir = out_root / str(section.get("name") or "model")
        for f in ("model.pt", "final.pt"):
            if (model_dir / f).is_file():
                tr.log_artifact(model_dir / f, artifact_path="model")
        from asr_core.train.checkpoint import latest_checkpoint

        last = latest_checkpoint(model_dir / "checkpoints")
        if last is not None:
            tr.log_artifact(last, artifact_path="checkpoints")
        log_summary_artifact(tr, summary, "train_summary.json")
    from tasks.train_log import export_curves

    export_curves(model_dir / "checkpoints", Path(args.curves or Path(args.report).parent))
    write_report(args.report, report)
    print(
        f"train: {report['steps']} steps, final loss {report['final_loss']}, best dev WER {report['best_dev_wer']} "
        f"CER {report['best_dev_cer']} (step {report['best_step']}), {report['audio_s_per_s']} audio s/s, "
        f"{report['wall_seconds']} s"
    )
    return report


if __name__ == "__main__":
    main()
