"""The test suite: it mirrors the source tree (tests/asr_core, tests/tasks, tests/flows, tests/bench)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # the repository root
