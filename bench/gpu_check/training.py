"""Steps 1, 2, 5 and 6: the real training engine on a synthetic recipe built in memory.

The recipe satisfies ``asr_core.train.engine``'s protocol (device, model, optimizer, schedule,
ema, train_loader, sampler, loss) with no files: each batch is random waveforms turned into
log-mel features by the project's filterbank on the training device, plus random transcripts,
all drawn from a generator seeded by (seed, epoch, batch index). So a batch is the same whenever
and wherever it is drawn, which is what makes the kill-and-resume comparison exact.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import gc
import math
import os
import shutil
import socket
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from gpu_check.harness import Context, finite, guarded, row, skipped, tf32_state
from gpu_check.project import (
    EMA,
    FAMILIES,
    FilterbankConfig,
    PeakMemory,
    RecipeBase,
    ScheduleConfig,
    TrainConfig,
    build_features,
    build_model,
    build_optimizer,
    build_schedule,
    ctc_loss,
    latency_stats,
    model_config,
    train,
)

SR = 16000
PRECISIONS = {"fp32": ("fp32", False), "tf32": ("fp32", True), "fp16": ("fp16", False), "bf16": ("bf16", False)}


class SyntheticData:
    """Loader and sampler in one: ``per_epoch`` batches per epoch, batch ``i`` = ``make(epoch, i)``."""

    def __init__(self, make, per_epoch: int) -> None:
        self.make, self.per_epoch, self.epoch, self.pos = make, per_epoch, 0, 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.pos = epoch, 0

    @property
    def remaining(self) -> int:
        return self.per_epoch - self.pos

    def __len__(self) -> int:
        return self.per_epoch

    def __iter__(self):
        while self.pos < self.per_epoch:
            self.pos += 1
            yield self.make(self.epoch, self.pos - 1)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, s: dict) -> None:
        self.epoch, self.pos = int(s["epoch"]), int(s["pos"])


class SyntheticRecipe(RecipeBase):
    """A CTC (QuartzNet, Conformer) or transducer (RNN-T) recipe over random audio; see the module doc."""

    def __init__(
        self,
        device: torch.device,
        *,
        family: str = "quartznet",
        preset: str = "15x5",
        overrides: dict | None = None,
        num_outputs: int = 29,
        batch: int = 8,
        seconds: float = 4.0,
        ragged: bool = True,
        max_steps: int = 10,
        seed: int = 0,
        per_epoch: int = 8,
    ) -> None:
        self.device, self.seed, self.batch, self.seconds, self.ragged = device, seed, batch, seconds, ragged
        self.num_outputs = num_outputs
        cfg = model_config(family, preset, **(overrides or {}))
        n_mels = getattr(cfg, "in_features", 64)
        torch.manual_seed(seed)
        self.model = build_model(family, preset, num_outputs, **(overrides or {})).to(device)
        self.transducer = self.model.kind == "transducer"
        # the transducer's features are not padded to a multiple of frames (asr_core.models.rnnt.features):
        # torchaudio's loss wants the longest utterance's encoder length to be the lattice's T
        fb = (
            FilterbankConfig(n_mels=n_mels, pad_to=0, normalize="none")
            if self.transducer
            else FilterbankConfig(n_mels=n_mels)
        )
        self.features = build_features(fb).to(device).eval()
        if self.transducer:  # edgedict trains with Adam; DLE's QuartzNet with Novograd
            self.optimizer, lr = build_optimizer("adamw", self.model, 1e-3, 1e-2), 1e-3
        else:
            self.optimizer, lr = build_optimizer("novograd", self.model, 0.01, 1e-3), 0.01
        sched = ScheduleConfig(name="exponential", warmup_steps=2, hold_steps=10**6)
        self.schedule = build_schedule(sched, lr, total_steps=max_steps, steps_per_epoch=per_epoch)
        self.ema = EMA(self.model, 0.999)
        self.train_loader = self.sampler = SyntheticData(self._batch, per_epoch)
        self.tokens_per_second = 3.0 if self.transducer else 12.0  # subwords vs characters

    @torch.no_grad()
    def _batch(self, epoch: int, index: int) -> dict[str, Any]:
        dev, b = self.device, self.batch
        g = torch.Generator(device=dev)
        g.manual_seed((self.seed * 1_000_003 + epoch * 10_007 + index) % 2**62)
        n = int(round(self.seconds * SR))
        lens = np.linspace(n, int(0.8 * n), b) if self.ragged else np.full(b, n)
        lens = torch.from_numpy(lens.round().astype(np.int64))
        waves = 0.1 * torch.randn(b, n, generator=g, device=dev)
        feats, feat_lens = self.features(waves, lens.to(dev))
        token_lens = (lens.double() / SR * self.tokens_per_second).round().clamp(min=1).long()
        low, high = (1, self.num_outputs) if self.transducer else (0, self.num_outputs - 1)  # never the blank
        tokens = torch.randint(low, high, (b, int(token_lens.max())), generator=g, device=dev)
        return {
            "feats": feats,
            "feat_lens": feat_lens,
            "tokens": tokens,
            "token_lens": token_lens.to(dev),
            "utt_ids": [f"e{epoch}-b{index}-u{i}" for i in range(b)],
            "audio_seconds": float(lens.sum()) / SR,
        }

    def loss(self, model, batch: dict[str, Any]):
        x, xl, y, yl = batch["feats"], batch["feat_lens"], batch["tokens"], batch["token_lens"]
        if self.transducer:
            return model(x, xl, y, yl), x.size(0)
        log_probs, out_lens = model(x, xl)
        return ctc_loss(log_probs, out_lens, y, yl), x.size(0)


class _Logs:
    def __init__(self) -> None:
        self.logs: list[dict] = []
        self.bad: list = []

    def on_log(self, step: int, metrics: dict) -> None:
        self.logs.append(dict(metrics, step=step))

    def on_bad(self, step: int, ids: list, reason: str) -> None:
        self.bad.append((step, ids[:4], reason))


def engine_run(
    ctx: Context, recipe: SyntheticRecipe, *, precision: str, tf32: bool, steps: int, warmup: int, ckpt_dir=None, **cfg
) -> dict:
    """``train()`` for ``warmup + steps`` updates (capped by the step's remaining time); the figures."""
    cb = _Logs()
    ckpt = ckpt_dir or ctx.scratch("ckpt")
    budget = max(ctx.remaining() - 10.0, 10.0) / 60.0 if math.isfinite(ctx.remaining()) else None
    tc = TrainConfig(
        max_steps=cfg.pop("max_steps", warmup + steps),
        precision=precision,
        tf32=tf32,
        log_every=1,
        ckpt_every=0,
        eval_at_end=False,
        keep_ckpts=1,
        best_metric=None,
        max_minutes=budget,
        **cfg,
    )
    try:
        with PeakMemory(ctx.device) as mem:
            summary = train(tc, recipe, ckpt, [cb])
    finally:
        if ckpt_dir is None:
            shutil.rmtree(ckpt, ignore_errors=True)
    timed = cb.logs[warmup:] or cb.logs
    dts = [1.0 / m["steps_per_s"] for m in timed]
    items = sum(m["sequences_per_s"] * dt for m, dt in zip(timed, dts))
    audio = sum(m["audio_s_per_s"] * dt for m, dt in zip(timed, dts))
    losses = [m["loss"] for m in cb.logs]
    return {
        "precision": precision + ("+tf32" if tf32 else ""),
        "batch": recipe.batch,
        "seconds": recipe.seconds,
        "steps": summary["steps"],
        "timed_steps": len(timed),
        "stopped_by": summary["stopped_by"],
        "sequences_per_s": round(items / sum(dts), 3) if dts else None,
        "audio_s_per_s": round(audio / sum(dts), 3) if dts else None,
        "step_ms": latency_stats(dts) if dts else None,
        "peak_mem_mb": round(mem.mb, 1) if mem.mb is not None else None,
        "memory_kind": mem.kind,
        "losses": [round(x, 5) if math.isfinite(x) else x for x in losses],
        "losses_finite": bool(losses) and finite(losses),
        "overflow_steps": summary["overflow_steps"],
        "bad_batches": summary["bad_batches"],
        "bad": cb.bad,
        "world_size": summary["world_size"],
        "resumed_from": summary["resumed_from"],
        "final_loss": summary["final_loss"],
        "wall_s": round(summary["wall_seconds"], 2),
    }


def _figures_text(f: dict) -> str:
    mem = f"peak {f['peak_mem_mb']:.0f} MiB" if f.get("peak_mem_mb") is not None else "peak n/a"
    return (
        f"{f['sequences_per_s']:.1f} seq/s, {f['audio_s_per_s']:.0f} audio s/s, "
        f"step p50 {f['step_ms']['p50']:.1f} ms, {mem}, batch {f['batch']} x {f['seconds']:g} s, "
        f"{f['timed_steps']} timed of {f['steps']} steps, losses {'finite' if f['losses_finite'] else 'NOT finite'}"
        + (f", {f['overflow_steps']} fp16 overflow steps" if f.get("overflow_steps") else "")
        + (f", stopped by {f['stopped_by']}" if f["stopped_by"] != "max_steps" else "")
    )


def _healthy(f: dict) -> bool:
    return f["losses_finite"] and f["bad_batches"] == 0


def _cpu_skip(step: str, name: str, precision: str) -> dict | None:
    if precision == "tf32":
        return skipped(step, name, "TF32 is a CUDA tensor-core mode; on the CPU the run would be plain fp32 again")
    if precision == "fp16":
        return skipped(step, name, "fp16 autocast with a GradScaler needs CUDA (Precision refuses it on the CPU)")
    return None


def _qn(ctx: Context, **kw) -> SyntheticRecipe:
    s = ctx.sizes
    return SyntheticRecipe(ctx.device, preset=s.qn_preset, overrides=dict(s.qn_overrides), **kw)


# -- step 1 --------------------------------------------------------------------------------------


def step1(ctx: Context) -> list[dict]:
    s, rows = ctx.sizes, []
    for name in ("fp32", "tf32", "fp16", "bf16"):
        if not ctx.cuda and (r := _cpu_skip("1", name, name)) is not None:
            rows.append(r)
            continue

        def one(name=name) -> dict:
            precision, tf32 = PRECISIONS[name]
            recipe = _qn(ctx, batch=s.train_batch, seconds=s.train_seconds, max_steps=s.train_warmup + s.train_steps)
            f = engine_run(ctx, recipe, precision=precision, tf32=tf32, steps=s.train_steps, warmup=s.train_warmup)
            f["tf32_state_after"] = tf32_state()
            status = "pass" if _healthy(f) else "fail"
            return row("1", name, status, _figures_text(f), f, target="finite losses, no bad batches")

        rows += guarded("1", name, one)
    rows += guarded("1", "kill after N/2 steps, resume, compare", lambda: resume_check(ctx))
    if ctx.cuda:
        rows += guarded("1", "deterministic mode on CUDA (probe)", lambda: determinism_probe(ctx))
    return rows


def _state_tensors(recipe: SyntheticRecipe) -> dict[str, torch.Tensor]:
    out = {f"model.{k}": v for k, v in recipe.model.state_dict().items()}
    out.update({f"ema.{k}": v for k, v in recipe.ema.shadow.state_dict().items()})
    for pid, st in recipe.optimizer.state_dict()["state"].items():
        out.update({f"opt.{pid}.{k}": v for k, v in st.items() if isinstance(v, torch.Tensor)})
    return out


def resume_check(ctx: Context) -> dict:
    """One run of N steps against a run stopped at N/2 (checkpoint) and resumed by a fresh recipe."""
    s = ctx.sizes
    n, half = s.resume_steps, s.resume_steps // 2
    deterministic = not ctx.cuda  # CUDA: see determinism_probe; cuDNN is made deterministic instead
    if ctx.cuda:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    kw = dict(batch=s.resume_batch, seconds=s.resume_seconds, max_steps=n)
    over = {**dict(s.qn_overrides), "dropout": 0.1}  # dropout: the resumed RNG streams matter

    def recipe() -> SyntheticRecipe:
        return SyntheticRecipe(ctx.device, preset=s.qn_preset, overrides=over, **kw)

    run = dict(precision="fp32", tf32=False, warmup=0, deterministic=deterministic)
    one = recipe()
    init = {k: v.detach().clone() for k, v in one.model.state_dict().items()}
    a = engine_run(ctx, one, steps=n, ckpt_dir=ctx.scratch("full"), **run)
    killed_dir = ctx.scratch("killed")
    b1 = engine_run(ctx, recipe(), steps=half, ckpt_dir=killed_dir, max_steps=half, **run)
    two = recipe()
    b2 = engine_run(ctx, two, steps=n, ckpt_dir=killed_dir, **run)
    ta, tb = _state_tensors(one), _state_tensors(two)
    diffs = {k: float((ta[k].double() - tb[k].double()).abs().max()) if ta[k].numel() else 0.0 for k in ta}
    differ = sorted(k for k in ta if not torch.equal(ta[k], tb[k]))
    exact = ta.keys() == tb.keys() and not differ
    max_diff = max(diffs.values()) if diffs else 0.0
    ran = a["steps"] == n and b1["steps"] == half and b2["steps"] == n and b2["resumed_from"] == half
    fig = {
        "steps": n,
        "killed_at": half,
        "resumed_from": b2["resumed_from"],
        "exact": exact,
        "max_abs_diff": max_diff,
        "tensors_compared": len(ta),
        "tensors_differing": len(differ),
        "differing_examples": differ[:5],
        "deterministic_algorithms": deterministic,
        "cudnn_deterministic": ctx.cuda,
        "losses_finite": a["losses_finite"] and b2["losses_finite"],
        "trained": any(not torch.equal(v, init[k]) for k, v in one.model.state_dict().items()),
    }
    if ctx.cuda:  # CTC's CUDA backward has no deterministic kernel: equality is reported, closeness gated
        ok, target = (
            ran and (exact or max_diff <= 1e-4),
            "resumed == uninterrupted (exact, or max |diff| <= 1e-4 on CUDA)",
        )
    else:
        ok, target = ran and exact, "bit-exact weights, EMA and optimizer state (deterministic fp32)"
    text = (
        f"{'bit-exact' if exact else 'NOT exact'}: max |diff| {max_diff:.3g} over {len(ta)} tensors "
        f"(model, EMA, optimizer), {n} steps, killed at {half}, resumed from {b2['resumed_from']}"
    )
    return row("1", "kill after N/2 steps, resume, compare", "pass" if ok else "fail", text, fig, target)


def determinism_probe(ctx: Context) -> dict:
    """Whether ``TrainConfig(deterministic=True)`` can train this CTC model on CUDA, and why not."""
    out: dict[str, str] = {"CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG") or "unset"}
    try:
        engine_run(
            ctx,
            _qn(ctx, batch=2, seconds=1.0, max_steps=1),
            precision="fp32",
            tf32=False,
            steps=1,
            warmup=0,
            deterministic=True,
        )
        out["engine_deterministic"] = "trains"
    except Exception as e:  # what it raises is the finding
        out["engine_deterministic"] = f"raises: {(str(e).splitlines() or [repr(e)])[0][:200]}"
    finally:
        torch.use_deterministic_algorithms(False)
    try:
        torch.use_deterministic_algorithms(True)
        lp = torch.randn(20, 2, 5, device=ctx.device, requires_grad=True)
        loss = torch.nn.functional.ctc_loss(
            lp.log_softmax(-1), torch.tensor([[1, 2], [3, 1]], device=ctx.device), [20, 20], [2, 2], blank=4
        )
        loss.backward()
        out["ctc_backward_deterministic"] = "runs"
    except Exception as e:  # likewise
        out["ctc_backward_deterministic"] = f"raises: {(str(e).splitlines() or [repr(e)])[0][:200]}"
    finally:
        torch.use_deterministic_algorithms(False)
    return row("1", "deterministic mode on CUDA (probe)", "ok", "; ".join(f"{k}: {v}" for k, v in out.items()), out)


# -- step 2 --------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def process_group(backend: str, device: torch.device):
    """A group of one over env:// on 127.0.0.1, with the variables Ray Train's workers get."""
    env = {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
        "LOCAL_WORLD_SIZE": "1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend, init_method="env://", timeout=datetime.timedelta(seconds=60))
        try:
            yield env
        finally:
            dist.destroy_process_group()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def step2(ctx: Context) -> list[dict]:
    backend = "nccl" if ctx.cuda else "gloo"
    if not dist.is_available():
        return [skipped("2", "engine under torch.distributed", "this torch build has no torch.distributed")]
    if ctx.cuda and not dist.is_nccl_available():
        return [skipped("2", "engine under torch.distributed", "this torch build has no NCCL")]
    s = ctx.sizes
    with process_group(backend, ctx.device) as env:

        def engine() -> dict:
            batch, seconds = (8, 4.0) if ctx.full else (s.resume_batch, s.resume_seconds)
            recipe = _qn(ctx, batch=batch, seconds=seconds, max_steps=s.dist_steps)
            f = engine_run(ctx, recipe, precision="fp32", tf32=False, steps=s.dist_steps, warmup=0)
            world = f["world_size"]
            f.update(
                backend=dist.get_backend(),
                rank=dist.get_rank(),
                init_method="env://",
                master=f"{env['MASTER_ADDR']}:{env['MASTER_PORT']}",
                path="DistributedDataParallel"
                if world > 1
                else "unwrapped (the engine wraps only when world_size > 1)",
            )
            ok = _healthy(f) and f["backend"] == backend and world == 1
            text = f"{f['backend']} world {world} via env://, model {f['path']}; " + _figures_text(f)
            return row(
                "2",
                "engine under torch.distributed",
                "pass" if ok else "fail",
                text,
                f,
                target=f"{backend} group of one trains, finite losses",
            )

        def wrapper() -> dict:
            return ddp_wrapper_check(ctx, backend)

        return guarded("2", "engine under torch.distributed", engine) + guarded("2", "DDP wrapper, world 1", wrapper)


def ddp_wrapper_check(ctx: Context, backend: str) -> dict:
    """The engine's DDP construction (``device_ids=[device.index]`` on CUDA) and an all-reduce:
    gradients through the wrapper equal the plain module's (a group of one averages over one rank)."""
    dev = ctx.device
    t = torch.full((4,), 3.0, device=dev)
    dist.all_reduce(t)
    reduced_ok = bool(torch.all(t == 3.0).item())
    if ctx.cuda:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    recipe = _qn(ctx, batch=2, seconds=1.0, max_steps=1)
    plain = copy.deepcopy(recipe.model)
    ddp = torch.nn.parallel.DistributedDataParallel(
        recipe.model, device_ids=[dev.index] if dev.type == "cuda" else None
    )
    batch = next(iter(recipe.train_loader))
    for m in (ddp, plain):
        m.zero_grad(set_to_none=True)
        recipe.loss(m, batch)[0].backward()
    ga = [p.grad for p in recipe.model.parameters()]
    gb = [p.grad for p in plain.parameters()]
    diff = max(float((a - b).abs().max()) for a, b in zip(ga, gb))
    scale = max(float(g.abs().max()) for g in gb)
    ok = reduced_ok and diff <= 1e-5 + 1e-4 * scale
    fig = {
        "backend": backend,
        "all_reduce_ok": reduced_ok,
        "grad_max_abs_diff": diff,
        "grad_max_abs": scale,
        "exact": diff == 0.0,
        "device_ids": [dev.index] if dev.type == "cuda" else None,
    }
    text = (
        f"all_reduce {'ok' if reduced_ok else 'WRONG'}; DDP grads vs plain: max |diff| {diff:.3g} "
        f"(max |grad| {scale:.3g})"
    )
    return row("2", "DDP wrapper, world 1", "pass" if ok else "fail", text, fig, "DDP gradients == plain module's")


# -- step 5 --------------------------------------------------------------------------------------


def _cpu_bf16_lstm() -> str | None:
    """Why ``nn.LSTM`` cannot run under CPU bf16 autocast here, or None when it can (oneDNN needs
    bf16 support in the CPU for its LSTM primitive; without it the call raises)."""
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.nn.LSTM(4, 4, batch_first=True)(torch.randn(1, 2, 4))
    except RuntimeError as e:
        return f"this CPU's oneDNN has no bf16 LSTM under autocast ({str(e).splitlines()[0][:80]}); CUDA is unaffected"
    return None


def step5(ctx: Context) -> list[dict]:
    s, rows = ctx.sizes, []
    # on the CPU the transducer also trains in fp32, so that its engine path runs wherever bf16 cannot
    names = ("bf16", "fp16") if ctx.cuda else ("bf16", "fp16", "fp32")
    for name in names:
        label = f"RNN-T {s.rnnt_preset} {name}"
        if not ctx.cuda and (r := _cpu_skip("5", label, name)) is not None:
            rows.append(r)
            continue
        if not ctx.cuda and name == "bf16" and (why := _cpu_bf16_lstm()) is not None:
            rows.append(skipped("5", label, why))
            continue

        def one(name=name, label=label) -> dict:
            recipe = SyntheticRecipe(
                ctx.device,
                family="rnnt",
                preset=s.rnnt_preset,
                num_outputs=s.rnnt_vocab,
                batch=s.rnnt_batch,
                seconds=s.rnnt_seconds,
                max_steps=s.rnnt_warmup + s.rnnt_steps,
            )
            f = engine_run(ctx, recipe, precision=name, tf32=False, steps=s.rnnt_steps, warmup=s.rnnt_warmup)
            f["parameters"] = sum(p.numel() for p in recipe.model.parameters())
            f["vocabulary"] = s.rnnt_vocab
            text = f"{f['parameters'] / 1e6:.1f} M parameters, V {s.rnnt_vocab}; " + _figures_text(f)
            return row("5", label, "pass" if _healthy(f) else "fail", text, f, "finite losses")

        rows += guarded("5", label, one)
    rows += guarded("5", "Conformer encoder", lambda: conformer(ctx))
    return rows


def conformer(ctx: Context) -> dict:
    if "conformer" not in FAMILIES:
        return skipped(
            "5", "Conformer encoder", f"asr_core.models has no 'conformer' family (it has {sorted(FAMILIES)})"
        )
    s = ctx.sizes
    presets = FAMILIES["conformer"].presets
    preset = "tiny" if ctx.tiny and "tiny" in presets else next((p for p in s.conformer_presets if p in presets), None)
    preset = preset or sorted(presets)[0]
    precision = "bf16"
    recipe = SyntheticRecipe(
        ctx.device,
        family="conformer",
        preset=preset,
        batch=s.rnnt_batch,
        seconds=s.rnnt_seconds,
        max_steps=s.rnnt_warmup + s.rnnt_steps,
    )
    f = engine_run(ctx, recipe, precision=precision, tf32=False, steps=s.rnnt_steps, warmup=s.rnnt_warmup)
    f["preset"] = preset
    return row(
        "5", f"Conformer {preset} {precision}", "pass" if _healthy(f) else "fail", _figures_text(f), f, "finite losses"
    )


# -- step 6 --------------------------------------------------------------------------------------


def step6(ctx: Context) -> list[dict]:
    s, rows, best = ctx.sizes, [], []
    for name in ("bf16", "fp16"):
        label = f"QuartzNet {s.qn_preset} {name}"
        if not ctx.cuda and (r := _cpu_skip("6", label, name)) is not None:
            rows.append(r)
            continue

        def one(name=name, label=label) -> dict:
            batch, f = s.tp_batch, None
            while f is None:
                recipe = None
                try:
                    recipe = _qn(
                        ctx, batch=batch, seconds=s.tp_seconds, ragged=False, max_steps=s.tp_warmup + s.tp_steps
                    )
                    f = engine_run(ctx, recipe, precision=name, tf32=False, steps=s.tp_steps, warmup=s.tp_warmup)
                except torch.OutOfMemoryError:
                    if batch <= 8:
                        raise
                    batch //= 2  # what fits: a user would lower the batch the same way
                if f is None:  # out of the except block: the failed attempt's tensors can be freed now
                    del recipe
                    gc.collect()
                    torch.cuda.empty_cache()
            f["requested_batch"] = s.tp_batch
            best.append((f["sequences_per_s"], label))
            return row("6", label, "ok" if _healthy(f) else "fail", _figures_text(f), f)

        rows += guarded("6", label, one)
    ref = f"DLE: {s.tp_reference:.1f} seq/s per A100 (651.6 on 8)"
    if best:
        top, who = max(best)
        fig = {
            "best_sequences_per_s": top,
            "best": who,
            "target": s.tp_target,
            "dle_per_a100": round(s.tp_reference, 1),
        }
        if ctx.full and s.tp_target is not None:
            status, target = ("pass" if top >= s.tp_target else "fail"), f">= {s.tp_target:g} seq/s per GPU; {ref}"
        else:
            status, target = "ok", f"none at tiny size ({ref})"
        rows.append(row("6", "best throughput", status, f"{top:.1f} seq/s ({who})", fig, target))
    return rows
