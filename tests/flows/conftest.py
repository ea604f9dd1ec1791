"""Fixtures of the flow tests: the Prefect test harness and a per-test copy of the tiny repo."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.flows.support import base_repo, copy_repo


@pytest.fixture(scope="session")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def repo(tmp_path_factory, tmp_path, monkeypatch, harness):
    r = copy_repo(base_repo(tmp_path_factory), tmp_path)
    monkeypatch.chdir(r)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{r / 'mlruns' / 'mlflow.db'}")
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    (r / "mlruns").mkdir(exist_ok=True)
    return r
