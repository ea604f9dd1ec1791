"""Measurement helpers: latency percentiles, peak memory, and the facts of the machine."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch

PERCENTILES = (50, 90, 95, 99)


def latency_stats(seconds: list[float] | np.ndarray) -> dict[str, float]:
    """Milliseconds: ``mean``, ``p50``, ``p90``, ``p95``, ``p99`` (linear interpolation, as numpy)."""
    x = np.asarray(seconds, dtype=np.float64) * 1000.0
    if x.size == 0:
        raise ValueError("latency_stats needs at least one timing")
    out = {"mean": float(x.mean())}
    out.update({f"p{q}": float(v) for q, v in zip(PERCENTILES, np.percentile(x, PERCENTILES))})
    return {k: round(v, 4) for k, v in out.items()}


def _proc_status_mb(field: str) -> float | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmHWM``, ``VmRSS``) in MiB; None where absent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current resident set; True only where the reset took effect.

    Some kernels (sandboxes such as gVisor among them) accept the write to ``clear_refs`` and
    ignore it, so the peak is read back: a reset peak is within a few MiB of ``VmRSS``.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    hwm, rss = _proc_status_mb("VmHWM"), _proc_status_mb("VmRSS")
    return hwm is not None and rss is not None and hwm - rss < 4.0


class PeakMemory:
    """Peak memory during a ``with`` block, in MiB.

    CUDA: ``torch.cuda.max_memory_allocated`` (reset on entry). CPU: the process's peak
    resident set (``VmHWM``), reset on entry through ``/proc/self/clear_refs`` (Linux >= 4.0);
    where that cannot be reset (or the kernel ignores the reset), the lifetime peak (``kind``
    says which).
    """

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.mb: float | None = None
        self.kind = ""

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.kind = "cuda_max_allocated"
        else:
            self.kind = "process_peak_rss" if _reset_peak_rss() else "process_lifetime_peak_rss"
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self.mb = _proc_status_mb("VmHWM")
            if self.mb is None:
                import resource

                self.mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
                self.kind = "process_lifetime_peak_rss"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _cpu_flags() -> str:
    """The vector-ISA flags that decide CPU inference speed (avx2, avx512*, amx*), space separated."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return " ".join(sorted(f for f in flags if f.startswith(("avx512", "amx")) or f in ("avx2", "fma")))
    return ""


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # not installed
        return None


def machine_facts() -> dict:
    """CPU model, cores, GPU, library versions: recorded with every benchmark result."""
    cuda = torch.cuda.is_available()
    facts = {
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_flags": _cpu_flags(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
        if hasattr(os, "sysconf")
        else None,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_count": torch.cuda.device_count() if cuda else 0,
        "cuda": torch.version.cuda if cuda else None,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "versions": {m: _version(m) for m in ("torch", "torchaudio", "onnx", "onnxruntime", "openvino", "numpy")},
    }
    return facts


def machine_id(facts: dict) -> str:
    """A short label grouping results measured on the same kind of machine (for history comparisons)."""
    gpu = facts.get("gpu") or "nogpu"
    return f"{facts.get('cpu_model')}|{facts.get('cpu_affinity')}c|{gpu}"
