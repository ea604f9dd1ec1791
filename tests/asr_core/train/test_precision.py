"""Subnormal floats are flushed to zero in a training process, on the calling thread and on the
intra-op threads started after it (a confident transducer's LSTM backward otherwise runs several
times slower on x86)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_flush_denormals_covers_the_intra_op_threads_started_after_it():
    code = textwrap.dedent(
        """
        import torch
        from asr_core.train.precision import flush_denormals
        assert flush_denormals(), "FTZ/DAZ not supported on this CPU"
        torch.set_num_threads(2)
        a = torch.full((1 << 20,), 1e-20)  # a * a = 1e-40: subnormal in fp32, unless flushed
        print("single", float((a[:8] * a[:8]).max()))
        print("parallel", float((a * a).max()))
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "single 0.0" in r.stdout and "parallel 0.0" in r.stdout, r.stdout


def test_the_train_stage_flushes_first():
    # train.main flushes before it reads its params: a run that fails on them has flushed already
    code = textwrap.dedent(
        """
        import torch
        from tasks import train
        try:
            train.main(["--params", "/nonexistent/params.yaml"])
        except BaseException as e:
            print("failed:", type(e).__name__)
        torch.set_num_threads(2)
        a = torch.full((1 << 20,), 1e-20)
        print("tiny", float((a * a).max()))
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "failed:" in r.stdout and "tiny 0.0" in r.stdout, r.stdout + r.stderr
