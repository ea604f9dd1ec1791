"""How a stage process ends when its run is stopped: a signal, or the death of what started it.

A stage is started by ``dvc repro`` (by hand, by ``make run``, or by a flow through
:func:`tasks.dvc_stage.run_stage`). Three ways its run can be stopped, and what each does here:

- Ctrl-C (SIGINT to the foreground process group): Python's ``KeyboardInterrupt``.
- SIGTERM or SIGHUP (a flow run cancelled, ``kill``, a closed terminal): :class:`StageStopped`, a
  ``KeyboardInterrupt``, raised in the main thread. Either way the stage's ``finally`` blocks run:
  a local Ray is shut down with every process it started, the MLflow run is marked KILLED.
- The *guardian* dies (SIGKILL of ``dvc repro``, of the flow run's process or of the serve process
  that runs it): a SIGKILL cannot be handled there, and this process would be reparented to PID 1
  and train on with nobody to read its result. A daemon thread watches the guardian (the pid in
  ``ASR_GUARDIAN_PID``, which the flows set, else the nearest ``dvc`` process above this one) and
  sends this process SIGTERM when it is gone; SIGKILL follows if the stop takes longer than
  :data:`FORCE_AFTER_S`. Checkpoints already written are kept, so the next run resumes.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

GUARDIAN_ENV = "ASR_GUARDIAN_PID"
POLL_S = 1.0
FORCE_AFTER_S = 60.0  # a graceful stop (checkpoint, ray.shutdown, MLflow) that hangs longer is cut short

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)

_installed = False
_fork_hook = False
_owner = 0  # the stage's own process: forked children inherit the handler, not the stop


class StageStopped(KeyboardInterrupt):
    """The stage process got SIGTERM or SIGHUP: stop as after Ctrl-C."""


def _raise_stopped(signum: int, frame) -> None:
    signal.signal(signum, signal.SIG_DFL)  # a second signal ends the process at once
    if os.getpid() != _owner:  # a child forked before the reset below took effect: die as by default
        os.kill(os.getpid(), signum)
        return
    raise StageStopped(f"stopped by {signal.Signals(signum).name}")


def _default_stop_in_child() -> None:
    """A forked child (a multiprocessing pool's worker, a data loader's) dies of SIGTERM as by default.

    A Python-level handler cannot serve there: CPython runs it only between bytecodes, so a
    SIGTERM that lands just before the child blocks in a C call (a pool worker waiting on its
    task queue's semaphore) is never acted on, and ``Pool.terminate`` waits for that child for
    ever (a prepare stage hung so after its last utterance). The kernel's default action has no
    such window."""
    for sig in STOP_SIGNALS:
        if signal.getsignal(sig) is _raise_stopped:
            signal.signal(sig, signal.SIG_DFL)


def _stat(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat`` from field 3 (state) on; None when the process is gone. The command name
    before it, in parentheses, may hold spaces."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def _ppid(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[1]) if fields else None  # field 4


def _is_dvc(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(Path(a.decode(errors="replace")).name == "dvc" for a in argv[:2] if a)


def guardian_pid() -> int | None:
    """The process whose death stops this stage: ``ASR_GUARDIAN_PID``, else the nearest ``dvc``
    above this process; None when neither exists (a stage run by hand keeps running on its own)."""
    given = os.environ.get(GUARDIAN_ENV)
    if given and given.isdigit():
        return int(given)
    pid = os.getpid()
    for _ in range(8):
        pid = _ppid(pid) or 0
        if pid <= 1:
            return None
        if _is_dvc(pid):
            return pid
    return None


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22): with the pid,
    it names one process for good (pids are reused)."""
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def _alive(pid: int) -> bool:
    """Running (a zombie, exited but not yet reaped by its parent, counts as gone)."""
    fields = _stat(pid)
    return bool(fields) and fields[0] != "Z"


def _watch(guardian: int) -> None:
    while _alive(guardian):
        time.sleep(POLL_S)
    print(f"stage: the process that started it (pid {guardian}) is gone: stopping", flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(FORCE_AFTER_S)
    os.kill(os.getpid(), signal.SIGKILL)


def handle_signals() -> None:
    """SIGTERM and SIGHUP raise :class:`StageStopped`. Call again after a library that installs its
    own handler (``ray.init`` makes SIGTERM a bare ``sys.exit(1)`` in the driver)."""
    global _owner, _fork_hook
    if threading.current_thread() is threading.main_thread():
        _owner = os.getpid()
        for sig in STOP_SIGNALS:
            signal.signal(sig, _raise_stopped)
        if not _fork_hook:
            os.register_at_fork(after_in_child=_default_stop_in_child)
            _fork_hook = True


def install() -> int | None:
    """Stop handlers for this process (main thread only; idempotent). Returns the guardian's pid."""
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return None
    _installed = True
    handle_signals()
    guardian = guardian_pid()
    if guardian is not None and guardian != os.getpid():
        threading.Thread(target=_watch, args=(guardian,), name="guardian-watch", daemon=True).start()
    return guardian
