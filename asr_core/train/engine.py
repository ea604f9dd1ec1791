"""A small, generic training loop: accumulation, clipping, AMP, bad batches, exact resume, DDP.

``train(cfg, recipe, ckpt_dir, callbacks)`` knows nothing about speech. The *recipe* (a
:class:`Recipe`: ``asr_core.train.supervised`` for CTC and transducer models, the wav2vec 2.0
recipes) supplies, built for this rank and device:

    device, model, optimizer, schedule (apply(opt, step), state_dict, watches_metric), ema (EMA or None),
    train_loader, sampler (set_epoch, epoch, state_dict, load_state_dict),
    loss(model, batch) -> (mean loss over the batch's items, num_items)  # num_items 0: empty batch
                                                # (items: utterances, or target tokens with a
                                                # per-token loss; sequences are counted from utt_ids)
    evaluate(model) -> {"wer": ..., ...}       # run with the EMA weights when EMA is on ({}: none)
    save_model(path, state_dict, step, metrics) # writes the inference artifact (None: none)
    state_dict() / load_state_dict()            # anything else the recipe must resume

:class:`RecipeBase` gives the last three members' do-nothing defaults.

Batches are mappings; the loop reads ``utt_ids`` (reported with bad batches; an empty list
marks an empty batch, which every rank must learn of *before* the forward, a collective under
DDP), ``skipped`` (``[(utt_id, reason)]`` dropped by the collate: reported, not counted as bad
batches) and ``audio_seconds`` (for throughput), each optional.

One optimizer update ("step") = ``grad_accum`` micro-batches. Each micro-batch's mean loss is
weighted by its item count, so ``grad_accum=2`` over batches of B equals one batch of 2B
(and DDP over W ranks equals one process with W times the batch), up to float rounding and
up to BatchNorm, whose batch statistics are per micro-batch and per rank (no SyncBatchNorm,
as DLE).

Bad batches: a micro-batch whose loss is not finite, or which is empty, drops the whole
step on every rank (the flag is all-reduced) and is reported through ``on_bad`` with its
utterance ids (gathered from every rank). A finite loss with a non-finite gradient norm
(fp32/bf16) drops the step the same way; under fp16 the GradScaler handles overflow itself.
A dropped step does not advance the step counter (its remaining micro-batches are not read,
the ones already read are lost for this epoch). The run aborts (:class:`TrainingAborted`)
once bad batches exceed ``max(max_bad_batches, max_bad_fraction * micro-batches seen)``.

Checkpoints (every ``ckpt_every`` steps, at the end, and when the ``max_minutes`` budget
runs out) hold model, optimizer, schedule, scaler, EMA, step, sampler position, the data
loader's generator and every rank's RNG states (python, numpy, torch, CUDA). Resuming loads
the latest one in ``ckpt_dir`` on every rank (it must be on storage every rank sees), so a
step-bounded run resumed after a kill ends with bit-identical weights on a deterministic
CPU setup. Time-bounded runs stop wherever the clock says: they are not reproducible. With
``fit_to_budget`` the run is instead shortened, schedule and all, to what the budget holds
(:mod:`asr_core.train.budget`); the fitted length is kept in the checkpoints.

DDP: when ``torch.distributed`` is initialised with more than one rank the model is wrapped
in ``DistributedDataParallel`` (a group of one, e.g. one Ray worker, trains unwrapped) (gloo on CPU, NCCL on GPU: chosen by whoever initialised the
group); the recipe shards its sampler with :func:`dist_info`. Only rank 0 evaluates, saves
and calls callbacks (``on_log(step, metrics)``, ``on_eval(step, metrics)``,
``on_checkpoint(step, path)``, ``on_bad(step, utt_ids, reason)``); all ranks stop together.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn

from asr_core.train.budget import FIT_AT, SKIP_STEPS, fitted_steps
from asr_core.train.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from asr_core.train.precision import Precision

log = logging.getLogger(__name__)


@dataclass
class LoopState:
    """What the loop carries between steps and across a resume (a checkpoint's ``engine`` entry)."""

    step: int = 0  # optimizer updates done
    bad_batches: int = 0
    batches_seen: int = 0  # micro-batches read
    skipped_utterances: int = 0
    overflow_steps: int = 0  # fp16: steps the GradScaler skipped
    best_value: float | None = None
    best_step: int | None = None
    best_metrics: dict[str, Any] = field(default_factory=dict)
    planned_steps: int | None = None  # the run's length fitted to its budget (fit_to_budget)

    def load(self, d: dict[str, Any]) -> None:
        """Take a checkpoint's values (keys this version does not know are refused)."""
        for k, v in d.items():
            if k not in {f.name for f in fields(self)}:
                raise ValueError(f"checkpoint engine state has an unknown key {k!r}")
            setattr(self, k, v)


class Recipe(Protocol):
    """What :func:`train` asks of a recipe (see the module doc)."""

    device: str | torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Any
    ema: Any
    train_loader: Any
    sampler: Any

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor | None, int]: ...

    def evaluate(self, model: nn.Module) -> dict[str, float]: ...

    def save_model(self, path: str | os.PathLike, state_dict: dict, step: int, metrics: dict) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class RecipeBase:
    """Defaults of the optional parts of a :class:`Recipe`: no evaluation, no model file, no state."""

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        return {}

    def save_model(self, path, state_dict, step, metrics) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


@dataclass
class TrainConfig:
    max_steps: int = 1000
    # A length in passes over the training set instead: the recipe turns it into steps (its
    # batches per epoch / grad_accum) and the schedule ends there; max_steps is then ignored.
    max_epochs: float | None = None
    max_minutes: float | None = None  # wall-clock budget of this call; stops with a checkpoint
    # Shorten the run (and its schedule) to what fits in max_minutes, timed over fit_after_steps
    # updates, when max_steps would not fit (asr_core.train.budget); no budget, nothing to fit.
    fit_to_budget: bool = False
    fit_after_steps: int = 30
    grad_accum: int = 1
    clip_norm: float | None = None  # None or 0: no clipping (the norm is still logged)
    precision: str = "fp32"  # fp32 | bf16 | fp16 (CUDA only) | auto (bf16 where native, else fp32)
    tf32: bool = False
    log_every: int = 10
    eval_every: int = 0  # 0: evaluate at the end only
    eval_at_end: bool = True
    ckpt_every: int = 100
    keep_ckpts: int = 3
    max_bad_batches: int = 10
    max_bad_fraction: float = 0.01
    seed: int = 0
    best_metric: str | None = "wer"  # evaluate() key that picks the best model
    best_mode: str = "min"
    deterministic: bool = False  # torch.use_deterministic_algorithms (exact-resume tests)

    def __post_init__(self) -> None:
        if self.max_steps < 0 or self.grad_accum < 1 or self.log_every < 1 or self.keep_ckpts < 0:
            raise ValueError(f"bad TrainConfig: {self}")
        if self.max_epochs is not None and self.max_epochs <= 0:
            raise ValueError(f"max_epochs must be > 0 (or null: max_steps), got {self.max_epochs}")
        if self.ckpt_every < 0 or self.eval_every < 0:
            raise ValueError(f"ckpt_every / eval_every must be >= 0: {self}")
        if self.fit_after_steps < 1:
            raise ValueError(f"fit_after_steps must be >= 1, got {self.fit_after_steps}")
        if self.best_mode not in ("min", "max"):
            raise ValueError(f"best_mode must be 'min' or 'max', got {self.best_mode!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown train loop option(s) {unknown}; known: {sorted(f.name for f in fields(cls))}")
        return cls(**d)


class TrainingAborted(RuntimeError):
    """Too many bad batches: the data or the recipe is broken, not one utterance."""


def dist_info() -> tuple[int, int]:
    """(rank, world_size); (0, 1) without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_reduce(values: list[float], device, op=None) -> list[float]:
    if dist_info()[1] == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
    return t.tolist()


def _gather(obj: Any) -> list[Any]:
    if dist_info()[1] == 1:
        return [obj]
    out: list[Any] = [None] * dist_info()[1]
    dist.all_gather_object(out, obj)
    return out


def _call(callbacks: Iterable[Any], name: str, *args: Any) -> None:
    for cb in callbacks:
        fn = getattr(cb, name, None)
        if fn is not None:
            fn(*args)


def train(
    cfg: TrainConfig,
    recipe: Recipe,
    ckpt_dir: str | os.PathLike,
    callbacks: Iterable[Any] = (),
    best_model_path: str | os.PathLike | None = None,
    final_model_path: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Train to ``cfg.max_steps`` updates (or the time budget); returns a summary (rank 0's)."""
    t0 = time.monotonic()
    rank, world = dist_info()
    callbacks = list(callbacks) if rank == 0 else []
    device = torch.device(recipe.device)
    prec = Precision(cfg.precision, device, cfg.tf32)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    raw: nn.Module = recipe.model
    model = raw
    if world > 1:
        model = nn.parallel.DistributedDataParallel(raw, device_ids=[device.index] if device.type == "cuda" else None)
    opt, sched, ema, sampler = recipe.optimizer, recipe.schedule, recipe.ema, recipe.sampler
    gen = getattr(recipe.train_loader, "generator", None)
    st = LoopState()

    # -- resume ------------------------------------------------------------------------------
    ckpt_dir = Path(ckpt_dir)
    path = [str(latest_checkpoint(ckpt_dir) or "")] if rank == 0 else [None]
    if world > 1:
        dist.broadcast_object_list(path, src=0)
    resumed_from = None
    if path[0]:
        ck = load_checkpoint(path[0])
        st.load(ck["engine"])
        if st.planned_steps is not None:  # the fitted length and its schedule, as before the stop
            sched = recipe.schedule = sched.with_total_steps(st.planned_steps)
        raw.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["schedule"])
        prec.load_state_dict(ck["precision"])
        if ema is not None:
            ema.load_state_dict(ck["ema"])
        sampler.load_state_dict(ck["sampler"])
        if gen is not None and ck.get("loader_generator") is not None:
            gen.set_state(ck["loader_generator"])
        if ck.get("recipe") is not None:
            recipe.load_state_dict(ck["recipe"])
        rngs = ck["rng"]
        if len(rngs) != world:
            log.warning(
                "checkpoint from %d ranks resumed on %d: RNG streams differ from the original run", len(rngs), world
            )
        set_rng_state(rngs[rank % len(rngs)])
        resumed_from = st.step
        log.info("resumed from %s (step %d, epoch %d)", path[0], st.step, sampler.epoch)
    else:
        seed_everything(cfg.seed + rank)
    start_step = st.step

    def checkpoint() -> Path | None:
        rngs = _gather(rng_state())  # every rank's streams, so every rank resumes exactly
        if rank != 0:
            return None
        state = {
            "step": st.step,
            "epoch": sampler.epoch,
            "world_size": world,
            "config": cfg.to_dict(),
            "engine": asdict(st),
            "model": raw.state_dict(),
            "optimizer": opt.state_dict(),
            "schedule": sched.state_dict(),
            "precision": prec.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "sampler": sampler.state_dict(),
            "loader_generator": gen.get_state() if gen is not None else None,
            "rng": rngs,
            "recipe": recipe.state_dict(),
        }
        p = save_checkpoint(ckpt_dir, st.step, state, keep=cfg.keep_ckpts)
        _call(callbacks, "on_checkpoint", st.step, p)
        return p

    def export_state() -> dict[str, torch.Tensor]:
        return (ema.shadow if ema is not None else raw).state_dict()

    last: dict[str, Any] = {"eval": -1, "metrics": {}}

    def evaluate() -> dict[str, float]:
        metrics: dict[str, float] = {}
        last.update(eval=st.step, metrics=metrics)  # on every rank: they must agree on when
        if rank == 0:
            raw.eval()
            try:
                with torch.no_grad(), prec.autocast():
                    if ema is not None:
                        with ema.swapped(raw):
                            metrics.update(recipe.evaluate(raw))
                    else:
                        metrics.update(recipe.evaluate(raw))
            finally:
                raw.train()
            _call(callbacks, "on_eval", st.step, metrics)
            value = metrics.get(cfg.best_metric) if cfg.best_metric else None
            if value is not None and math.isfinite(value):
                best = st.best_value
                if best is None or (value < best if cfg.best_mode == "min" else value > best):
                    st.best_value, st.best_step, st.best_metrics = float(value), st.step, dict(metrics)
                    if best_model_path is not None:
                        recipe.save_model(best_model_path, export_state(), st.step, metrics)
        if sched.watches_metric and cfg.best_metric:  # plateau: every rank needs the same lr
            v = _all_reduce([metrics.get(cfg.best_metric, 0.0) if rank == 0 else 0.0], device)[0]
            sched.observe(v)
        return metrics

    # -- the loop ----------------------------------------------------------------------------
    it = None

    def next_batch():
        nonlocal it
        for _ in range(3):
            if it is None:
                if getattr(sampler, "remaining", 1) == 0:  # resumed exactly at an epoch's end
                    sampler.set_epoch(sampler.epoch + 1)
                sampler.set_epoch(sampler.epoch)
                it = iter(recipe.train_loader)
            try:
                return next(it)
            except StopIteration:
                it = None
                sampler.set_epoch(sampler.epoch + 1)
        raise RuntimeError("the train loader yields no batches")

    def report_bad(ids: list, reason: str) -> None:
        st.bad_batches += 1
        _call(callbacks, "on_bad", st.step, ids, reason)
        if rank == 0:
            log.warning("step %d: batch skipped (%s): %s", st.step, reason, ids)
        limit = max(cfg.max_bad_batches, cfg.max_bad_fraction * st.batches_seen)
        if st.bad_batches > limit:
            raise TrainingAborted(
                f"{st.bad_batches} bad batches in {st.batches_seen} (limit {limit:g}: max_bad_batches="
                f"{cfg.max_bad_batches}, max_bad_fraction={cfg.max_bad_fraction}); last at step {st.step}: "
                f"{reason}, utterances {ids}"
            )

    raw.train()
    win = {"loss": 0.0, "items": 0.0, "seqs": 0.0, "audio": 0.0, "steps": 0, "wait": 0.0, "t": time.monotonic()}
    totals = {"seqs": 0.0, "audio": 0.0, "seconds": 0.0}
    last.update(loss=float("nan"), ckpt=start_step if resumed_from is not None else -1)
    stop = False
    end = st.planned_steps or cfg.max_steps
    fitting = cfg.fit_to_budget and cfg.max_minutes is not None and st.planned_steps is None
    fit = {"t": None, "paused": 0.0} if fitting else None
    fit_points = [k * cfg.fit_after_steps for k in FIT_AT]  # timed steps after which the length is set
    while st.step < end and not stop:
        opt.zero_grad(set_to_none=True)
        loss_sum = n_local = seqs = audio = 0.0
        skipped: list = []
        step_ids: list = []
        ref, bad = None, None
        for i in range(cfg.grad_accum):
            tw = time.monotonic()
            batch = next_batch()
            win["wait"] += time.monotonic() - tw
            st.batches_seen += 1
            skipped += list(batch.get("skipped") or [])
            ids = list(batch.get("utt_ids") or [])
            step_ids += ids
            # before the forward, which is itself a collective under DDP: every rank must run it or none
            empty = "utt_ids" in batch and not ids
            if _all_reduce([float(empty)], device)[0] > 0:
                dropped = [
                    u for part in _gather([s[0] for s in batch.get("skipped") or []] if empty else []) for u in part
                ]
                bad = ("empty batch (every utterance dropped)", dropped)
                break
            # DDP: gradients are exchanged on the last micro-batch's backward only
            with model.no_sync() if world > 1 and i < cfg.grad_accum - 1 else contextlib.nullcontext():
                with prec.autocast():
                    loss, n = recipe.loss(model, batch)
                ok = n > 0 and loss is not None and bool(torch.isfinite(loss.detach()).item())
                n_bad, n_sum = _all_reduce([0.0 if ok else 1.0, float(n)], device)  # every rank decides alike
                if n_bad > 0:
                    gathered = _gather(None if ok else ("empty batch" if n == 0 else "non-finite loss", ids))
                    found = [g for g in gathered if g is not None]
                    bad = (found[0][0], [u for g in found for u in g[1]])
                    break
                ref = ref or n_sum / world  # a common weight reference on every rank
                prec.backward(loss * (n / ref) if n != ref else loss)
            loss_sum += float(loss.detach()) * n
            n_local += n
            seqs += float(len(ids) if "utt_ids" in batch else n)
            audio += float(batch.get("audio_seconds", 0.0))
        over = rank == 0 and cfg.max_minutes is not None and time.monotonic() - t0 > 60 * cfg.max_minutes
        n_glob, loss_glob, seqs_glob, audio_glob, stop_flag, n_skip = _all_reduce(
            [n_local, loss_sum, seqs, audio, float(over), float(len(skipped))], device
        )
        if n_skip:
            for utt_id, why in [s for part in _gather(skipped) for s in part]:
                _call(callbacks, "on_bad", st.step, [utt_id], f"utterance dropped: {why}")
            st.skipped_utterances += int(n_skip)
        if bad is not None:
            opt.zero_grad(set_to_none=True)
            report_bad(bad[1], bad[0])
            stop = stop_flag > 0
            continue
        # the gradients hold sum_i (n_i / ref) grad_i, averaged over ranks by DDP: make it a mean over items
        prec.unscale_(opt)
        scale = world * ref / n_glob
        if scale != 1.0:
            torch._foreach_mul_([p.grad for p in raw.parameters() if p.grad is not None], scale)
        lr = sched.apply(opt, st.step)
        norm = float(prec.clip_(raw.parameters(), cfg.clip_norm))
        if prec.scaler is None and not math.isfinite(norm):  # the same on every rank (synced grads)
            report_bad([u for part in _gather(step_ids) for u in part], f"non-finite gradient norm {norm}")
            stop = stop_flag > 0
            continue
        if not prec.step(opt):
            st.overflow_steps += 1
        if ema is not None:
            ema.update(raw)
        st.step += 1
        stop = stop_flag > 0
        step = st.step
        last["loss"] = loss_glob / n_glob
        for k, v in (("loss", loss_glob), ("items", n_glob), ("seqs", seqs_glob), ("audio", audio_glob)):
            win[k] += v
        win["steps"] += 1
        if step % cfg.log_every == 0 or step == end or stop:
            dt = max(time.monotonic() - win["t"], 1e-9)
            totals["seqs"] += win["seqs"]
            totals["audio"] += win["audio"]
            totals["seconds"] += dt
            _call(
                callbacks,
                "on_log",
                step,
                {
                    "loss": win["loss"] / max(win["items"], 1),
                    "lr": lr,
                    "grad_norm": norm,
                    "steps_per_s": win["steps"] / dt,
                    "sequences_per_s": win["seqs"] / dt,
                    "audio_s_per_s": win["audio"] / dt,
                    "data_wait_fraction": win["wait"] / dt,
                    "epoch": sampler.epoch,
                    "bad_batches": st.bad_batches,
                    "skipped_utterances": st.skipped_utterances,
                },
            )
            win.update(loss=0.0, items=0.0, seqs=0.0, audio=0.0, steps=0, wait=0.0, t=time.monotonic())
        paused = time.monotonic()
        if cfg.eval_every and step % cfg.eval_every == 0:
            evaluate()
        if cfg.ckpt_every and step % cfg.ckpt_every == 0:
            checkpoint()
            last["ckpt"] = step
        win["t"] += time.monotonic() - paused  # evaluation and saving are not training time
        if fit is not None:
            fit["paused"] += time.monotonic() - paused
            if step == start_step + SKIP_STEPS:
                fit.update(t=time.monotonic(), paused=0.0)
            elif step - start_step - SKIP_STEPS in fit_points:
                timed = step - start_step - SKIP_STEPS
                step_s = (time.monotonic() - fit["t"] - fit["paused"]) / timed
                planned = 0
                if rank == 0:
                    planned = fitted_steps(
                        done=step,
                        max_steps=cfg.max_steps,
                        elapsed_s=time.monotonic() - t0,
                        step_s=step_s,
                        budget_s=60 * cfg.max_minutes,
                        min_steps=sched.min_total_steps,
                    )
                planned = int(_all_reduce([float(planned)], device)[0])  # rank 0's plan, on every rank
                if planned != end:
                    sched = recipe.schedule = sched.with_total_steps(planned)
                    if rank == 0:
                        log.info(
                            "fit_to_budget: %.3f s a step over %d steps; %d of max_steps %d fit in max_minutes %g",
                            step_s,
                            timed,
                            planned,
                            cfg.max_steps,
                            cfg.max_minutes,
                        )
                end = st.planned_steps = planned
                if timed == fit_points[-1]:
                    fit = None

    # -- the end: checkpoint, last evaluation, models --------------------------------------------
    step = st.step
    if cfg.eval_at_end and last["eval"] != step:
        evaluate()  # before the checkpoint, so that it records the best model so far
    if last["ckpt"] != step:
        checkpoint()
    final_metrics = last["metrics"] if last["eval"] == step else {}
    if rank == 0:
        if final_model_path is not None:
            recipe.save_model(final_model_path, export_state(), step, final_metrics)
        if best_model_path is not None and st.best_step is None:  # no evaluation: the last is the best
            recipe.save_model(best_model_path, export_state(), step, final_metrics)
    return {
        "steps": step,
        "start_step": start_step,
        "resumed_from": resumed_from,
        "stopped_by": "max_steps" if step >= cfg.max_steps else "fitted_steps" if step >= end else "time_budget",
        "planned_steps": st.planned_steps,
        "final_loss": last["loss"],
        "epoch": sampler.epoch,
        "world_size": world,
        "precision": prec.precision,
        "bad_batches": st.bad_batches,
        "skipped_utterances": st.skipped_utterances,
        "overflow_steps": st.overflow_steps,
        "best_step": st.best_step,
        "best_value": st.best_value,
        "best_metrics": st.best_metrics,
        "final_metrics": final_metrics,
        "wall_seconds": time.monotonic() - t0,
        "train_seconds": totals["seconds"],
        "sequences_per_s": totals["seqs"] / max(totals["seconds"], 1e-9),
        "audio_s_per_s": totals["audio"] / max(totals["seconds"], 1e-9),
    }
