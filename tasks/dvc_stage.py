"""Run one DVC stage (``dvc repro --single-item <stage>``) with its output streamed line by line.

The flows call :func:`run_stage` once per stage, in pipeline order, so ``dvc.lock`` stays the
record of what was produced from what, exactly as ``dvc repro`` would leave it. DVC itself
decides whether the stage runs: unchanged inputs print "didn't change, skipping", a match in
DVC's run-cache restores the outputs ("is cached"); both come back as ``skipped``.
A failing stage raises :class:`StageFailed` whose message carries the stage's own error.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tasks.lifecycle import GUARDIAN_ENV

TOKEN_ENV = "ASR_RUN_TOKEN"  # inherited by every process a stage starts (Ray's too): found by stop_tree
STOP_GRACE_S = 15.0  # SIGTERM -> SIGKILL; well inside Prefect's own grace before it kills the flow process

TAIL_LINES = 40
# Lines worth quoting in a failure message: the stage's own error and DVC's verdict.
# tqdm bars arrive as one line per refresh once "\r" is read as a newline: keep only the last.
_PROGRESS = re.compile(r"\b\d{1,3}%\|.*\|")
_ERROR_LINE = re.compile(r"^(error:|ERROR:|\w+(Error|Exception|Exit)\b:?)|Traceback")


class StageFailed(RuntimeError):
    """A DVC stage exited non-zero; ``str()`` holds its error lines and the tail of its output."""

    def __init__(self, stage: str, returncode: int, errors: list[str], tail: list[str]):
        self.stage, self.returncode, self.errors, self.tail = stage, returncode, errors, tail
        lines = errors or tail[-5:]
        super().__init__(
            f"DVC stage '{stage}' failed (exit {returncode}): "
            + " | ".join(lines)
            + "\n--- last output lines ---\n"
            + "\n".join(tail)
        )


@dataclass
class StageResult:
    stage: str
    ran: bool  # the stage's command ran (False: skipped or restored from run-cache)
    how: str  # "ran" | "unchanged" | "run-cache"
    seconds: float
    tail: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> bool:
        return not self.ran


def dvc_executable() -> str:
    here = Path(sys.executable).parent / "dvc"
    if here.is_file():
        return str(here)
    found = shutil.which("dvc")
    if not found:
        raise FileNotFoundError("dvc executable not found next to python or on PATH")
    return found


def pipeline_stages(repo: str | Path) -> list[str]:
    """Stage names of ``<repo>/dvc.yaml`` in file order."""
    path = Path(repo) / "dvc.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run flows from the repository root")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    stages = data.get("stages")
    if not isinstance(stages, dict):
        raise ValueError(f"{path}: no 'stages:' mapping")
    return list(stages)


def stage_graph(repo: str | Path) -> tuple[list[str], list[tuple[str, str]]]:
    """(stages in dvc.yaml order, edges upstream -> downstream) from ``dvc dag --dot``."""
    r = subprocess.run(
        [dvc_executable(), "dag", "--dot"],
        cwd=str(repo),
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if r.returncode != 0:
        raise RuntimeError(f"dvc dag failed in {repo}: {r.stderr.strip() or r.stdout.strip()}")
    nodes, edges = [], []
    for line in r.stdout.splitlines():
        m = re.fullmatch(r'\s*"([^"]+)"\s*->\s*"([^"]+)";?\s*', line)
        if m:
            edges.append((m.group(1), m.group(2)))
            continue
        m = re.fullmatch(r'\s*"([^"]+)";?\s*', line)
        if m:
            nodes.append(m.group(1))
    return nodes, edges


def stage_plan(repo: str | Path, targets: list[str]) -> tuple[list[str], list[str]]:
    """(the targets plus every stage they depend on, in pipeline order; targets dvc.yaml lacks).

    A stage another engineer adds upstream (say a language model that evaluate reads) is run
    in its place without editing the flows' stage lists.
    """
    nodes, edges = stage_graph(repo)
    missing = [t for t in targets if t not in nodes]
    need = {t for t in targets if t in nodes}
    grew = True
    while grew:
        ups = {a for a, b in edges if b in need} - need
        grew = bool(ups)
        need |= ups
    order, done = [], set()
    while len(order) < len(need):  # topological, ties in dvc.yaml order
        ready = [
            n for n in nodes if n in need and n not in done and all(a in done for a, b in edges if b == n and a in need)
        ]
        if not ready:
            raise RuntimeError(f"dvc.yaml: dependency cycle among {sorted(need - done)}")
        order.append(ready[0])
        done.add(ready[0])
    return order, missing


def subprocess_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a stage: the venv first on PATH, telemetry and progress bars off."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        {
            "DVC_NO_ANALYTICS": "1",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "TQDM_DISABLE": "1",
            "PYTHONUNBUFFERED": "1",
            "RAY_USAGE_STATS_ENABLED": "0",
        }
    )
    env.update(extra or {})
    return env


def run_stage(
    stage: str,
    *,
    repo: str | Path,
    env: Mapping[str, str] | None = None,
    log: Callable[[str], None] = print,
    force: bool = False,
    grace_s: float = STOP_GRACE_S,
) -> StageResult:
    """``dvc repro --single-item [--force] <stage>`` in ``repo``; every output line goes to ``log``."""
    cmd = [dvc_executable(), "repro", "--single-item", *(["--force"] if force else []), stage]
    token = uuid.uuid4().hex
    guard = {GUARDIAN_ENV: str(os.getpid()), TOKEN_ENV: token}
    t0 = time.monotonic()
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    errors: list[str] = []
    ran = cached = False
    proc = subprocess.Popen(
        cmd,
        cwd=str(repo),
        env=subprocess_env({**(env or {}), **guard}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
        start_new_session=True,  # its own process group: stopped as a whole (stop_tree), not by stray signals
    )
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip()
            if not line or (_PROGRESS.search(line) and "100%|" not in line):
                continue
            log(line)
            tail.append(line)
            if f"Running stage '{stage}'" in line:
                ran = True
            elif f"Stage '{stage}' is cached" in line:
                cached = True
            if _ERROR_LINE.search(line.strip()):
                errors.append(line.strip())
        rc = proc.wait()
    except BaseException as e:  # cancelled (Prefect's TerminationSignal), Ctrl-C, or our own error
        log(f"stopping stage '{stage}' ({type(e).__name__}): SIGTERM to its processes")
        left = stop_tree(proc, token, grace_s=grace_s)
        log(f"stage '{stage}' stopped" + (f"; {left} process(es) needed SIGKILL" if left else ""))
        raise
    if rc != 0:
        # The traceback header alone says nothing: keep the lines that name the error.
        raise StageFailed(stage, rc, [e for e in errors if e != "Traceback (most recent call last):"][-6:], list(tail))
    how = "ran" if ran else ("run-cache" if cached else "unchanged")
    return StageResult(stage, ran, how, round(time.monotonic() - t0, 2), list(tail))


def lock_outs(repo: str | Path, stages: list[str] | None = None) -> dict[str, str]:
    """``{"<stage>:<path>": md5}`` for every output (and metrics file) recorded in ``dvc.lock``."""
    path = Path(repo) / "dvc.lock"
    if not path.is_file():
        return {}
    lock = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    out: dict[str, str] = {}
    for name, entry in (lock.get("stages") or {}).items():
        if stages is not None and name not in stages:
            continue
        for o in entry.get("outs") or []:
            if "md5" in o:
                out[f"{name}:{o['path']}"] = o["md5"]
    return out


def pids_with_env(entry: str) -> list[int]:
    """Processes (other than this one) whose environment holds ``entry`` (``NAME=value``); Linux
    ``/proc``, elsewhere none."""
    needle = entry.encode()
    found = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (d / "environ").read_bytes().split(b"\0"):
                found.append(int(d.name))
        except OSError:
            continue
    return [p for p in found if p != os.getpid()]


def token_pids(token: str) -> list[int]:
    """The processes of a stage started by :func:`run_stage` (``ASR_RUN_TOKEN=<token>``)."""
    return pids_with_env(f"{TOKEN_ENV}={token}")


def _is_stage(pid: int) -> bool:
    """A stage's main process (``python -m tasks.<stage>``), not one of its Ray or loader processes."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(a.startswith(b"tasks.") for a in argv[1:3]) and b"-m" in argv[1:3]


def stop_tree(proc: subprocess.Popen, token: str, grace_s: float = STOP_GRACE_S) -> int:
    """Stop a stage started by :func:`run_stage`: SIGTERM to its process group (dvc, the stage, a
    local Ray), up to ``grace_s`` for a clean stop (checkpoint kept, MLflow run KILLED), then
    SIGKILL to the group and to every process still carrying the run's token (Ray processes in
    sessions of their own). Returns how many processes needed SIGKILL."""
    # The stage's own process first: it stops its local Ray itself (ray.shutdown) and marks its MLflow
    # run KILLED; a SIGTERM to the whole group would take the Ray processes from under it first, and
    # Ray's driver then exits without running its cleanup. DVC ends when its stage does.
    stages = [p for p in token_pids(token) if _is_stage(p)]
    for pid in stages:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    if not stages:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and (proc.poll() is None or token_pids(token)):
        time.sleep(0.2)
    killed = 0
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in token_pids(token):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed += 1
    proc.wait()
    return killed
