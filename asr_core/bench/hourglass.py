"""The Hourglass table of DLE's wav2vec 2.0: pre-training throughput and peak memory, per shortening factor.

For the plain Transformer and each factor f, the same pre-training model (same seed, same
preset) with the layer plan ``[p, (L - 2p, f), p]`` (``p = round(L / 6)``: DLE's
``[2, (8, f), 2]`` for the 12-layer Base) runs ``warmup + steps`` full pre-training updates
(forward with the contrastive / diversity / feature-penalty loss, backward, AdamW step) on one
fixed batch of random waveforms with fixed per-utterance draws. Reported per configuration:
median step time, audio seconds per second, peak memory (CUDA: ``max_memory_allocated``; CPU:
the process's peak RSS during the configuration, reset before it, minus its RSS before the model
was built: the interpreter and libraries are not counted), and both as ratios to the plain model. DLE's figures (Base, A100 80 GB, bf16): factor 2: 1.25x speed, 70.98% memory;
3: 1.33x, 64.31%; 4: 1.37x, 62.35%; 5: 1.39x, 60.00%; 6: 1.40x, 59.61%.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from asr_core.bench.measure import PeakMemory
from asr_core.models import model_config
from asr_core.models.wav2vec2 import Wav2Vec2ForPreTraining, pretraining_loss, utterance_generators

DLE_TABLE = {2: (1.25, 0.7098), 3: (1.33, 0.6431), 4: (1.37, 0.6235), 5: (1.39, 0.6000), 6: (1.40, 0.5961)}


def _rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024.0
    except (OSError, StopIteration):
        return 0.0


def hourglass_plan(num_layers: int, factor: int) -> str | None:
    """``[p, (L - 2p, f), p]`` with ``p = round(L / 6)`` (Base: ``[2, (8, f), 2]``); None for f = 1."""
    if factor == 1:
        return None
    p = max(1, round(num_layers / 6))
    return f"[{p}, ({num_layers - 2 * p}, {factor}), {p}]"


def _step_fn(
    model: Wav2Vec2ForPreTraining, wave: torch.Tensor, lens: torch.Tensor, seeds: list[int], precision: str
) -> Callable[[], float]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.98), eps=1e-6)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(wave.device.type, dtype=dtype, enabled=dtype is not None):
            loss, _ = pretraining_loss(model(wave, lens, utterance_generators(seeds, wave.device)))
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        return float(loss.detach())

    return step


def run_config(
    preset: str,
    factor: int,
    *,
    batch_size: int,
    seconds: float,
    steps: int,
    warmup: int,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    seed: int = 0,
    overrides: dict | None = None,
) -> dict:
    """One row of the table: ``factor`` 1 is the plain Transformer."""
    dev = torch.device(device)
    base = model_config("wav2vec2", preset, **(overrides or {}))
    cfg = base.replace(hourglass=hourglass_plan(base.num_layers, factor))
    g = torch.Generator().manual_seed(seed)
    samples = int(round(seconds * 16000))
    wave = torch.randn(batch_size, samples, generator=g).to(dev)
    # lengths from 75% to 100% of the batch: padding as in bucketed batches
    lens = torch.from_numpy(np.linspace(samples, int(samples * 0.75), batch_size).round().astype(np.int64)).to(dev)
    torch.manual_seed(seed)
    model = Wav2Vec2ForPreTraining(cfg).to(dev).train()
    n_params = sum(p.numel() for p in model.parameters())
    step = _step_fn(model, wave, lens, [seed * 1000 + b for b in range(batch_size)], precision)
    times, losses = [], []
    before = _rss_mb() if dev.type == "cpu" else 0.0  # CPU: the process's RSS before the run is not counted
    with PeakMemory(dev) as mem:
        for i in range(warmup + steps):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            losses.append(step())
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    del model, step
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    t = float(np.median(times))
    return {
        "factor": factor,
        "plan": cfg.hourglass or "plain",
        "step_s": round(t, 5),
        "audio_s_per_s": round(float(lens.sum()) / 16000 / t, 3),
        "peak_mem_mb": round(mem.mb - before, 1),
        "memory_kind": mem.kind,
        "loss_first": round(losses[0], 4),
        "steps": steps,
        "parameters": n_params,
    }


def hourglass_table(
    preset: str = "tiny",
    factors: Sequence[int] = (2, 3, 4, 5, 6),
    *,
    batch_size: int = 4,
    seconds: float = 4.0,
    steps: int = 5,
    warmup: int = 2,
    device: str = "cpu",
    precision: str = "fp32",
    seed: int = 0,
    overrides: dict | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Rows for the plain model and every factor, with ratios to the plain model."""
    rows = []
    for f in (1, *factors):
        r = run_config(
            preset,
            f,
            batch_size=batch_size,
            seconds=seconds,
            steps=steps,
            warmup=warmup,
            device=device,
            precision=precision,
            seed=seed,
            overrides=overrides,
        )
        rows.append(r)
        log(
            f"hourglass: {r['plan']}: {1000 * r['step_s']:.1f} ms/step, {r['audio_s_per_s']:.1f} audio s/s, "
            f"peak {r['peak_mem_mb']:.0f} MiB"
        )
    plain = rows[0]
    for r in rows:
        r["speedup"] = round(plain["step_s"] / r["step_s"], 4)
        # None when the plain run's peak could not be measured (a process high-water mark already above it)
        r["memory_ratio"] = round(r["peak_mem_mb"] / plain["peak_mem_mb"], 4) if plain["peak_mem_mb"] > 0 else None
        if r["factor"] in DLE_TABLE:
            r["dle_speedup"], r["dle_memory_ratio"] = DLE_TABLE[r["factor"]]
    return {
        "preset": preset,
        "batch_size": batch_size,
        "seconds": seconds,
        "steps": steps,
        "warmup": warmup,
        "device": str(device),
        "precision": precision,
        "rows": rows,
    }


def markdown(table: dict) -> str:
    """The table as Markdown (ratios to the plain model, DLE's beside them)."""
    lines = [
        f"preset {table['preset']}, batch {table['batch_size']} x {table['seconds']} s, {table['device']} "
        f"{table['precision']}, median of {table['steps']} steps",
        "",
        "| configuration | step | audio s/s | peak memory | speed-up | memory (% of plain) | DLE (Base, A100) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table["rows"]:
        dle = (
            f"{r['dle_speedup']:.2f}x, {100 * r['dle_memory_ratio']:.2f}%"
            if "dle_speedup" in r
            else ("1.00x, 100.00%" if r["factor"] == 1 else "")
        )
        lines.append(
            f"| {r['plan']} | {1000 * r['step_s']:.1f} ms | {r['audio_s_per_s']:.1f} | "
            f"{r['peak_mem_mb']:.0f} MiB | {r['speedup']:.2f}x | {'n/a' if r['memory_ratio'] is None else format(100 * r['memory_ratio'], '.2f') + '%'} | {dle} |"
        )
    return "\n".join(lines) + "\n"
