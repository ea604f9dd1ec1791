"""The inference benchmark grid: batch sizes x clip lengths x runners, as DLE's inference benchmark.

Per iteration of a cell (B clips of L seconds):

    data     read B audio files (soundfile), pad them into a batch, compute the features (none
             for a waveform-input runner: ``ClipLoader(features=None)``)
    network  the runner (model or exported graph; for ``openvino_wave_*`` the filterbank too) and
             greedy CTC decoding (argmax, collapse)
    e2e      data + network

After ``warmup`` untimed iterations, ``iterations`` timed ones (fewer, but at least
``min_iterations``, once ``max_cell_seconds`` of timed work is reached). Throughput is the
real-time factor (RTFx, seconds of audio per second) at the median: ``B * L / p50``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from asr_core.bench.measure import PeakMemory, latency_stats
from asr_core.models import greedy_decode


@dataclass(frozen=True)
class GridConfig:
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16)
    clip_seconds: tuple[float, ...] = (2.0, 7.0, 16.7)
    warmup: int = 2
    iterations: int = 20
    min_iterations: int = 3
    max_cell_seconds: float | None = 2.0

    def __post_init__(self) -> None:
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError(f"batch_sizes must be positive integers, got {self.batch_sizes}")
        if not self.clip_seconds or min(self.clip_seconds) <= 0:
            raise ValueError(f"clip_seconds must be > 0, got {self.clip_seconds}")
        if self.warmup < 1 or self.iterations < 1 or not 1 <= self.min_iterations <= self.iterations:
            # warm-up >= 1: the first call of a shape compiles (OpenVINO static shapes) or captures (CUDA graphs)
            raise ValueError(f"need warmup >= 1 and 1 <= min_iterations <= iterations: {self}")


def cell_id(device: str, runner: str, batch: int, clip: float) -> str:
    """``cpu/openvino_bf16/bs16/16.7s``: the key of a cell in reports and in MLflow."""
    return f"{device}/{runner}/bs{batch}/{clip:g}s"


def make_clips(
    out_dir: str | Path,
    clip_seconds: float,
    count: int,
    *,
    sample_rate: int = 16000,
    sources: list[np.ndarray] | None = None,
    seed: int = 0,
) -> list[Path]:
    """``count`` FLAC files of exactly ``clip_seconds``: real utterances back to back (``sources``,
    cycled), or deterministic synthetic audio when there are none."""
    from asr_core.testing.audio import make_wave

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = int(round(clip_seconds * sample_rate))
    paths, k = [], 0
    for i in range(count):
        if sources:
            parts, have = [], 0
            while have < n:
                parts.append(sources[k % len(sources)])
                have += len(parts[-1])
                k += 1
            x = np.concatenate(parts)[:n]
        else:
            x = make_wave(clip_seconds, sample_rate, seed=seed + i)[:n]
        p = out_dir / f"clip{clip_seconds:g}s-{i:02d}.flac"
        sf.write(p, x, sample_rate, subtype="PCM_16")
        paths.append(p)
    return paths


class ClipLoader:
    """The timed data path: files -> padded batch -> features on ``device`` (``features=None``: the
    padded waveforms and their lengths, for a runner that ``takes_waveform``)."""

    def __init__(
        self,
        paths: list[Path],
        features: torch.nn.Module | None,
        device: str | torch.device = "cpu",
        threads: int | None = None,
    ) -> None:
        """``threads``: torch CPU threads for the filterbank (None: torch's setting). One is the faster
        choice in front of OpenVINO / onnxruntime on a small machine: their idle workers spin on the
        cores a second torch thread would need (QuartzNet 15x5 batch 1 x 7 s, 2 cores: 2.2 ms on one
        thread, 4.7 ms on two, right after an OpenVINO bf16 inference)."""
        self.paths, self.device, self.i = list(paths), torch.device(device), 0
        self.features = None if features is None else features.to(self.device).eval()
        self.threads = threads if self.device.type == "cpu" else None

    @torch.inference_mode()
    def __call__(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        waves = []
        for _ in range(batch):
            x, _sr = sf.read(self.paths[self.i % len(self.paths)], dtype="float32", always_2d=False)
            waves.append(torch.from_numpy(x))
            self.i += 1
        lens = torch.tensor([len(w) for w in waves])
        x = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
        if self.features is None:
            return x.to(self.device), lens.to(self.device)
        if self.threads is None:
            return self.features(x.to(self.device), lens.to(self.device))
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            return self.features(x, lens)
        finally:
            torch.set_num_threads(before)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_cell(runner, loader: ClipLoader, batch: int, clip: float, cfg: GridConfig) -> dict:
    """Latency percentiles, RTFx and peak memory of one cell."""
    dev = loader.device
    data, net, e2e = [], [], []
    with PeakMemory(runner.device if runner.device.type == "cuda" else dev) as mem:
        for i in range(cfg.warmup + cfg.iterations):
            t0 = time.perf_counter()
            feats, lens = loader(batch)
            _sync(dev)
            t1 = time.perf_counter()
            log_probs, out_lens = runner(feats, lens)
            greedy_decode(log_probs, out_lens)  # .tolist() inside waits for the device
            t2 = time.perf_counter()
            if i >= cfg.warmup:
                data.append(t1 - t0)
                net.append(t2 - t1)
                e2e.append(t2 - t0)
                done = len(e2e)
                if cfg.max_cell_seconds is not None and done >= cfg.min_iterations and sum(e2e) >= cfg.max_cell_seconds:
                    break
    audio = batch * clip
    out = {"iterations": len(e2e), "audio_seconds": audio}
    for name, xs in (("data", data), ("net", net), ("e2e", e2e)):
        out.update({f"{name}_{k}_ms": v for k, v in latency_stats(xs).items()})
    out["rtfx"] = round(audio / (out["e2e_p50_ms"] / 1000), 2)
    out["rtfx_net"] = round(audio / (out["net_p50_ms"] / 1000), 2)
    out["peak_mem_mb"] = round(mem.mb, 1) if mem.mb is not None else None
    out["peak_mem_kind"] = mem.kind
    return out


def run_grid(runner, loaders: dict[float, ClipLoader], cfg: GridConfig, device: str, log=print) -> dict[str, dict]:
    """Every (batch, clip) cell of one runner: ``{cell_id: stats}``."""
    cells = {}
    for clip in cfg.clip_seconds:
        for batch in cfg.batch_sizes:
            key = cell_id(device, runner.name, batch, clip)
            cells[key] = time_cell(runner, loaders[clip], batch, clip, cfg)
            c = cells[key]
            log(
                f"benchmark: {key}: e2e p50 {c['e2e_p50_ms']:.1f} ms (net {c['net_p50_ms']:.1f}, data "
                f"{c['data_p50_ms']:.1f}), p99 {c['e2e_p99_ms']:.1f} ms, RTFx {c['rtfx']:.1f} "
                f"(net {c['rtfx_net']:.1f}), {c['iterations']} it"
            )
    return cells
