"""Training throughput: sequences and audio seconds per second of optimizer steps.

Random features of ``clip_seconds`` and random character targets (about 12 per second, well
inside the CTC alignment limit), CTC loss, AdamW; fp32, bf16 autocast (CPU/CUDA) or fp16
autocast with a GradScaler (CUDA). Measures the step (forward, backward, update), not the
data pipeline.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from asr_core.bench.measure import PeakMemory, latency_stats
from asr_core.models import ctc_loss


def train_throughput(
    model: nn.Module,
    *,
    batch_size: int,
    clip_seconds: float,
    precision: str = "fp32",
    warmup: int = 1,
    steps: int = 3,
    device: str = "cpu",
    in_features: int | None = 64,
    frames_per_second: int = 100,
    seed: int = 0,
) -> dict:
    dev = torch.device(device)
    if precision not in ("fp32", "tf32", "bf16", "fp16"):
        raise ValueError(f"train_throughput: unknown precision {precision!r}")
    if precision in ("fp16", "tf32") and dev.type != "cuda":
        raise ValueError(f"train_throughput: {precision} needs CUDA")
    if steps < 1 or warmup < 0:
        raise ValueError(f"train_throughput: need steps >= 1 and warmup >= 0, got {steps}, {warmup}")
    g = torch.Generator().manual_seed(seed)
    frames = int(round(clip_seconds * frames_per_second))
    frames += -frames % 16
    if in_features is None:  # a waveform model (wav2vec 2.0): (B, S) samples at 16 kHz
        frames = int(round(clip_seconds * 16000))
        x = torch.randn(batch_size, frames, generator=g).to(dev)
    else:
        x = torch.randn(batch_size, in_features, frames, generator=g).to(dev)
    x_lens = torch.full((batch_size,), frames, dtype=torch.long, device=dev)
    n_labels = getattr(model, "num_outputs", 29) - 1
    target_len = max(1, int(clip_seconds * 12))
    y = torch.randint(0, n_labels, (batch_size, target_len), generator=g).to(dev)
    y_lens = torch.full((batch_size,), target_len, dtype=torch.long, device=dev)
    model = model.to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    times = []
    with PeakMemory(dev) as mem:
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
                log_probs, out_lens = model(x, x_lens)
            loss = ctc_loss(log_probs, out_lens, y, y_lens)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"train_throughput: non-finite loss {loss.item()} at step {i}")
    step = float(np.median(times))
    return {
        "precision": precision,
        "batch_size": batch_size,
        "clip_seconds": clip_seconds,
        "steps": steps,
        "step_ms": latency_stats(times),
        "sequences_per_s": round(batch_size / step, 4),
        "audio_s_per_s": round(batch_size * clip_seconds / step, 4),
        "peak_mem_mb": round(mem.mb, 1) if mem.mb is not None else None,
    }
