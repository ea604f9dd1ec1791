"""The check's frame: sizes, rows, guarded steps with time caps, machine facts, the two reports.

A row is a plain dict (it goes to JSON as it is)::

    {"step": "3", "name": "torch_fp16 bs16x16.7s", "status": "pass", "summary": "...",
     "figures": {...}, "target": "...", "reason": None, "error": None, "traceback": None, "elapsed_s": 1.2}

``status``: ``pass`` / ``fail`` (a target was checked), ``ok`` (ran, no target), ``error`` (raised:
``error`` and ``traceback`` say where), ``skipped`` (``reason`` says why). ``fail`` and ``error``
are the failed rows (``--strict``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import gc
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

STATUSES = ("pass", "fail", "ok", "error", "skipped")
FAILED = ("fail", "error")
STEP_TITLES = {
    "env": "Environment",
    "1": "Engine training steps, QuartzNet (fp32 / TF32 / fp16 + GradScaler / bf16) and kill-resume",
    "2": "Engine under torch.distributed (env:// rendezvous, as Ray Train sets it up)",
    "3": "Benchmark stage cells, QuartzNet: latency and agreement with CPU fp32",
    "4": "wav2vec 2.0 pre-training, Hourglass factors against the plain Transformer",
    "5": "RNN-T E6D2 training steps (and a Conformer encoder when the registry has one)",
    "6": "Training throughput per GPU, QuartzNet",
    "dali": "DALI feature pipeline on the GPU",
}


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Every size knob of the check: :meth:`full` for the GPU, :meth:`tiny` for a CPU smoke run."""

    qn_preset: str = "15x5"
    qn_overrides: tuple[tuple[str, Any], ...] = ()
    # step 1: batch x longest seconds (lengths 80-100% of it), warm-up + timed steps per precision
    train_batch: int = 32
    train_seconds: float = 16.7
    train_warmup: int = 3
    train_steps: int = 10
    resume_batch: int = 8
    resume_seconds: float = 4.0
    resume_steps: int = 6  # killed after half of them
    # step 2
    dist_steps: int = 4
    # step 3: (batch, clip seconds) cells and the timing loop of each
    cells: tuple[tuple[int, float], ...] = ((1, 2.0), (16, 16.7))
    cell_targets_ms: tuple[float | None, ...] = (5.0, 15.0)
    cell_reference_ms: tuple[float | None, ...] = (35.7, 57.8)
    cell_warmup: int = 3
    cell_iterations: int = 100
    cell_min_iterations: int = 5
    cell_max_seconds: float = 3.0
    # step 4
    w2v_preset: str = "base"
    w2v_factors: tuple[int, ...] = (2, 3, 4, 5, 6)
    w2v_batch: int = 8
    w2v_seconds: float = 15.6
    w2v_steps: int = 5
    w2v_warmup: int = 2
    # step 5
    rnnt_preset: str = "e6d2"
    rnnt_vocab: int = 2048
    rnnt_batch: int = 16
    rnnt_seconds: float = 10.0
    rnnt_warmup: int = 2
    rnnt_steps: int = 8
    conformer_presets: tuple[str, ...] = ("m", "medium", "s", "small", "base", "l", "large")
    # step 6: sequences of exactly this length (DLE's benchmark pads to 16.7 s)
    tp_batch: int = 64
    tp_seconds: float = 16.7
    tp_warmup: int = 3
    tp_steps: int = 12
    tp_target: float | None = 160.0
    tp_reference: float = 651.6 / 8
    # seconds each step may take (an alarm stops it past that) and the whole run's budget
    caps: tuple[tuple[str, float], ...] = (("1", 150), ("2", 60), ("3", 150), ("4", 120), ("5", 90), ("6", 90))
    budget_s: float = 480.0

    @classmethod
    def full(cls) -> Sizes:
        return cls()

    @classmethod
    def tiny(cls) -> Sizes:
        small = {"prologue_channels": 32, "block_channels": (32, 32, 32, 32, 32), "epilogue_channels": 32}
        return cls(
            qn_preset="tiny",
            qn_overrides=tuple({**small, "output_channels": 48}.items()),
            train_batch=4,
            train_seconds=1.0,
            train_warmup=1,
            train_steps=2,
            resume_batch=3,
            resume_seconds=1.0,
            resume_steps=4,
            dist_steps=2,
            cells=((1, 2.0), (4, 4.0)),
            cell_targets_ms=(None, None),
            cell_warmup=1,
            cell_iterations=3,
            cell_min_iterations=2,
            cell_max_seconds=0.5,
            w2v_preset="tiny",
            w2v_factors=(2,),
            w2v_batch=2,
            w2v_seconds=1.0,
            w2v_steps=1,
            w2v_warmup=1,
            rnnt_preset="tiny",
            rnnt_vocab=64,
            rnnt_batch=2,
            rnnt_seconds=1.0,
            rnnt_warmup=1,
            rnnt_steps=1,
            tp_batch=8,
            tp_seconds=1.0,
            tp_warmup=1,
            tp_steps=2,
            tp_target=None,
            caps=(("1", 60), ("2", 30), ("3", 60), ("4", 60), ("5", 30), ("6", 30)),
            budget_s=300.0,
        )

    def cap(self, step: str) -> float:
        return float(dict(self.caps).get(step, 60.0))


@dataclasses.dataclass
class Context:
    """What every step gets: the device, the sizes, a scratch folder, the clock and a logger."""

    device: torch.device
    tiny: bool
    sizes: Sizes
    tmp: Path
    t0: float = dataclasses.field(default_factory=time.monotonic)
    log: Callable[[str], None] = print
    step_deadline: float = math.inf  # monotonic time at which the running step's cap ends

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def full(self) -> bool:
        """Targets are checked only on a full-size run on the GPU."""
        return self.cuda and not self.tiny

    def remaining(self) -> float:
        """Seconds left of the running step's cap (engine runs turn it into ``max_minutes``)."""
        return self.step_deadline - time.monotonic()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def scratch(self, name: str) -> Path:
        d = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.tmp))
        return d


# -- rows ----------------------------------------------------------------------------------------


def row(
    step: str,
    name: str,
    status: str,
    summary: str = "",
    figures: dict | None = None,
    target: str | None = None,
    reason: str | None = None,
) -> dict:
    if status not in STATUSES:
        raise ValueError(f"unknown row status {status!r}")
    return {
        "step": step,
        "name": name,
        "status": status,
        "summary": summary,
        "figures": figures or {},
        "target": target,
        "reason": reason,
        "error": None,
        "traceback": None,
        "elapsed_s": None,
    }


def skipped(step: str, name: str, reason: str) -> dict:
    r = row(step, name, "skipped", reason=reason)
    r["elapsed_s"] = 0.0
    return r


def error_row(step: str, name: str, exc: BaseException) -> dict:
    r = row(step, name, "error")
    r["error"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:2000]
    frames = traceback.extract_tb(exc.__traceback__)[-8:]
    r["traceback"] = [f"{Path(f.filename).name}:{f.lineno} in {f.name}: {(f.line or '').strip()}" for f in frames]
    return r


def guarded(step: str, name: str, fn: Callable[[], dict | list[dict]]) -> list[dict]:
    """``fn``'s row(s), or an error row: one failing check must not stop the others of its step.

    Once the step's cap has fired, the step's remaining checks are skipped rather than started.
    """
    if _CAP["expired"]:
        return [skipped(step, name, "the step's time cap was reached before this check")]
    t = time.monotonic()
    try:
        out = fn()
        rows = out if isinstance(out, list) else [out]
    except Exception as e:  # recorded as a row (StepTimeout included); the other checks still run
        rows = [error_row(step, name, e)]
    finally:
        _release_memory()
    dt = round(time.monotonic() - t, 2)
    for r in rows:
        if r["elapsed_s"] is None:
            r["elapsed_s"] = dt
    return rows


def finite(xs) -> bool:
    return all(isinstance(x, (int, float)) and math.isfinite(x) for x in xs)


# -- time caps -----------------------------------------------------------------------------------


class StepTimeout(Exception):
    """A step ran past its cap (raised from SIGALRM in the main thread)."""


_CAP = {"expired": False}


@contextlib.contextmanager
def time_cap(seconds: float) -> Iterator[None]:
    """Raise :class:`StepTimeout` in this (main) thread after ``seconds``; no-op where SIGALRM is missing."""
    if not hasattr(signal, "SIGALRM") or seconds <= 0 or math.isinf(seconds):
        yield
        return

    def _raise(signum, frame):
        _CAP["expired"] = True
        raise StepTimeout(f"ran past its cap of {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def step_done() -> None:
    """Between steps: the next one starts with its own cap."""
    _CAP["expired"] = False
    _release_memory()


def _release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


class GlobalState:
    """Process-wide switches the steps change (deterministic algorithms, TF32, cuDNN flags): taken
    at start, put back after every step, so that no step measures under another one's settings."""

    def __init__(self) -> None:
        self.cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
        self.threads = torch.get_num_threads()

    def restore(self) -> None:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = self.cudnn
        # torch's defaults (no TF32 in matmuls, TF32 in cuDNN convolutions) through the legacy setters,
        # which set the per-backend fp32_precision flags too: both views agree again afterwards
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = True
        torch.set_num_threads(self.threads)


def tf32_state() -> dict:
    """Both views of the TF32 switches; "raises" where torch finds them inconsistent (mixed APIs)."""
    out = {}
    for name, get in (
        ("matmul_fp32_precision", lambda: torch.backends.cuda.matmul.fp32_precision),
        ("cudnn_conv_fp32_precision", lambda: torch.backends.cudnn.conv.fp32_precision),
        ("matmul_allow_tf32", lambda: torch.backends.cuda.matmul.allow_tf32),
        ("cudnn_allow_tf32", lambda: torch.backends.cudnn.allow_tf32),
    ):
        try:
            out[name] = get()
        except Exception as e:  # torch refuses to read flags set through both APIs: that is the finding
            out[name] = f"raises: {str(e)[:90]}"
    return out


# -- the machine ---------------------------------------------------------------------------------


def _nvidia_smi() -> dict | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=15,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if not out:
        return None
    name, driver, memory = (s.strip() for s in out.splitlines()[0].split(","))
    return {"name": name, "driver_version": driver, "memory": memory}


def environment(device: torch.device, facts: Callable[[], dict]) -> dict:
    """Device, driver, torch / CUDA / cuDNN / NCCL versions and the project's machine facts."""
    env: dict[str, Any] = {
        "device": str(device),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }
    for mod in ("torchaudio", "onnxruntime", "numpy"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception:  # absent or broken: the report shows None
            env[mod] = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(
            device_name=torch.cuda.get_device_name(0),
            device_memory_gib=round(props.total_memory / 2**30, 1),
            compute_capability=f"{props.major}.{props.minor}",
            device_count=torch.cuda.device_count(),
        )
        with contextlib.suppress(Exception):
            env["nccl"] = ".".join(str(v) for v in torch.cuda.nccl.version())
        smi = _nvidia_smi()
        if smi is not None:
            env.update(driver_version=smi["driver_version"], driver_source="nvidia-smi", nvidia_smi=smi)
        else:
            with contextlib.suppress(Exception):
                v = torch._C._cuda_getDriverVersion()  # the CUDA driver API version, e.g. 13000
                env.update(driver_version=f"CUDA driver API {v // 1000}.{v % 1000 // 10}", driver_source="torch")
    else:
        env.update(device_name=None, driver_version=None, driver_source=None)
    try:
        env["machine"] = facts()
    except Exception as e:  # facts are context, not a check
        env["machine"] = {"error": repr(e)}
    return env


# -- agreement -----------------------------------------------------------------------------------


def edit_distance(a: list, b: list) -> int:
    """Levenshtein distance between two sequences (substitutions, insertions, deletions count 1)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def words(tokens: list[int], space: int = 0) -> list[tuple[int, ...]]:
    """Token ids split into words at ``space`` (the character vocabulary's id 0)."""
    out, cur = [], []
    for t in tokens:
        if t == space:
            if cur:
                out.append(tuple(cur))
            cur = []
        else:
            cur.append(t)
    if cur:
        out.append(tuple(cur))
    return out


def agreement(ref: list[list[int]], hyp: list[list[int]]) -> dict:
    """Greedy transcripts against the reference's: token agreement (1 - token edit rate), identical
    utterances, and the WER of ``hyp`` taking ``ref`` as the reference (no jiwer)."""
    tok_err = sum(edit_distance(r, h) for r, h in zip(ref, hyp))
    toks = sum(len(r) for r in ref)
    wr = [words(r) for r in ref]
    word_err = sum(edit_distance(r, words(h)) for r, h in zip(wr, hyp))
    n_words = sum(len(r) for r in wr)
    return {
        "token_agreement": round(1.0 - tok_err / toks, 6) if toks else (1.0 if tok_err == 0 else 0.0),
        "identical_utterances": sum(r == h for r, h in zip(ref, hyp)),
        "utterances": len(ref),
        "transcripts_identical": all(r == h for r, h in zip(ref, hyp)),
        "wer_vs_cpu_fp32": round(word_err / n_words, 6) if n_words else 0.0,
        "reference_tokens": toks,
    }


# -- reports -------------------------------------------------------------------------------------


def counts(rows: list[dict]) -> dict[str, int]:
    c = dict.fromkeys(STATUSES, 0)
    for r in rows:
        c[r["status"]] += 1
    return c


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _json_safe(x):
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)  # JSON has no NaN / inf
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, Path | torch.device | torch.dtype):
        return str(x)
    return x


def write_reports(out_dir: Path, report: dict) -> tuple[Path, Path]:
    """``gpu_check.json`` and ``gpu_check.md`` in ``out_dir``, each written to a temporary file then renamed."""
    j, m = out_dir / "gpu_check.json", out_dir / "gpu_check.md"
    _atomic_write(j, json.dumps(_json_safe(report), indent=2, allow_nan=False) + "\n")
    _atomic_write(m, markdown(report))
    return j, m


def _cell(text: Any) -> str:
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def markdown(report: dict) -> str:
    env, c = report["environment"], report["counts"]
    mode = report["mode"]
    lines = [
        f"# GPU check: {env.get('device_name') or env['device']}",
        "",
        f"- command: `{report['command']}`",
        f"- when: {report['started']} ({report['elapsed_s']:.0f} s of a {mode['budget_s']:.0f} s budget)",
        f"- mode: {'tiny' if mode['tiny'] else 'full size'} on {env['device']}",
        f"- device: {env.get('device_name') or 'CPU'}; driver {env.get('driver_version') or 'n/a'} "
        f"({env.get('driver_source') or 'no GPU'}); torch {env['torch']}, CUDA {env.get('cuda_build')}, "
        f"cuDNN {env.get('cudnn')}, NCCL {env.get('nccl', 'n/a')}",
        f"- rows: {len(report['rows'])}: {c['pass']} pass, {c['fail']} fail, {c['error']} error, "
        f"{c['ok']} ok (no target), {c['skipped']} skipped",
        "",
    ]
    if not report.get("complete", True):
        lines[-1:-1] = ["- **partial report**: written after a step; the run had not finished"]
    for step, title in STEP_TITLES.items():
        rows = [r for r in report["rows"] if r["step"] == step]
        if not rows:
            continue
        lines += [f"## {step}. {title}", "", "| check | status | figures | target | time |", "|---|---|---|---|---|"]
        for r in rows:
            text = r["summary"] or ""
            if r["status"] == "skipped":
                text = f"skipped: {r['reason']}"
            elif r["status"] == "error":
                text = f"{r['error']}"[:300]
            t = f"{r['elapsed_s']:.1f} s" if r["elapsed_s"] is not None else ""
            lines.append(
                f"| {_cell(r['name'])} | **{r['status']}** | {_cell(text)} | {_cell(r['target'] or '')} | {t} |"
            )
        lines.append("")
    bad = [r for r in report["rows"] if r["status"] == "error"]
    if bad:
        lines += ["## Errors", ""]
        for r in bad:
            lines += [f"### {r['step']} / {r['name']}", "", "```", r["error"] or "", *(r["traceback"] or []), "```", ""]
    notes = report.get("notes") or []
    if notes:
        lines += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(lines)


def text_summary(report: dict) -> str:
    """The console version of the report: one line per row, then the counts."""
    lines = []
    for r in report["rows"]:
        what = r["summary"] if r["status"] not in ("skipped", "error") else (r["reason"] or r["error"] or "")
        t = f"{r['elapsed_s']:6.1f}s" if r["elapsed_s"] is not None else "       "
        lines.append(f"{r['step']:>4}  {r['status']:<7} {t}  {r['name']:<34} {what}"[:260])
    c = report["counts"]
    lines.append(
        f"gpu check: {len(report['rows'])} rows in {report['elapsed_s']:.0f} s: {c['pass']} pass, {c['fail']} fail, "
        f"{c['error']} error, {c['ok']} ok, {c['skipped']} skipped"
    )
    return "\n".join(lines)


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()
