"""The stage's stop handler: SIGTERM stops the stage process as Ctrl-C would; a forked worker that
inherits the handler (a multiprocessing pool's, a data loader's) dies as by default instead."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)


def test_sigterm_raises_stage_stopped_in_the_stage_process():
    r = _run(
        """
        import os, signal
        from tasks import lifecycle
        lifecycle.install()
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            import time; time.sleep(5)
        except lifecycle.StageStopped as e:
            print("stopped:", e)
        """
    )
    assert r.returncode == 0 and "stopped: stopped by SIGTERM" in r.stdout, r.stdout + r.stderr


def test_a_forked_worker_dies_quietly_on_sigterm():
    r = _run(
        """
        import os, signal, time
        from tasks import lifecycle
        lifecycle.install()
        pid = os.fork()
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        time.sleep(0.3)
        os.kill(pid, signal.SIGTERM)
        _, status = os.waitpid(pid, 0)
        print("signalled", os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM)
        """
    )
    assert r.returncode == 0 and "signalled True" in r.stdout, r.stdout + r.stderr
    assert "StageStopped" not in r.stderr, r.stderr


def test_a_forked_child_has_the_default_stop_action():
    # A Python-level handler in a child can miss a SIGTERM that lands just before a blocking C call
    # (a pool worker's queue wait), which made Pool.terminate wait for ever: children get the default.
    r = _run(
        """
        import multiprocessing as mp, os, signal
        from tasks import lifecycle
        lifecycle.install()

        def dispositions(_):
            return [signal.getsignal(s) is signal.SIG_DFL for s in (signal.SIGTERM, signal.SIGHUP)]

        with mp.get_context("fork").Pool(2) as pool:
            print("children", pool.map(dispositions, range(4)))
        print("parent", signal.getsignal(signal.SIGTERM) is lifecycle._raise_stopped)
        """
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "children [[True, True], [True, True], [True, True], [True, True]]" in r.stdout, r.stdout
    assert "parent True" in r.stdout, r.stdout
