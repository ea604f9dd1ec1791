import os
import sys
from pathlib import Path

import pytest

for k, v in {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "RAY_USAGE_STATS_ENABLED": "0",
    "DO_NOT_TRACK": "1",
}.items():
    os.environ.setdefault(k, v)


@pytest.fixture(autouse=True, scope="session")
def _isolated_tracking(tmp_path_factory):
    """Tests never write to the repo's mlruns/: every MLflow run goes to a temp store."""
    store = tmp_path_factory.mktemp("mlruns")
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"
    yield store
    if old is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old


@pytest.fixture
def venv_bin() -> Path:
    return Path(sys.executable).parent


@pytest.fixture(autouse=True)
def _default_sigchld():
    """Give SIGCHLD back its default handler after each test.

    A torch DataLoader with worker processes installs a SIGCHLD handler in the main process
    (once per process, to report dead workers) and leaves it there. In a long pytest process a
    later test that starts any child process (subprocess, OpenVINO, MLflow) then crashed with
    SIGSEGV inside poll() when that child exited. Stage commands run one per process, so only
    the test process needs this.
    """
    yield
    import signal

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)


@pytest.fixture(autouse=True)
def _default_sigint():
    """Give SIGINT back Python's handler after each test.

    A library can leave SIGINT ignored in the test process (Ray and Prefect install handlers of
    their own); an ignored signal stays ignored in every child process, so a later test's
    ``dvc repro`` and its stage would not see a Ctrl-C at all.
    """
    yield
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def ov_bf16() -> bool:
    """Whether OpenVINO runs bf16 on this CPU (AVX512-BF16 or AMX); without it the bf16 runners
    are skipped with the reason, which tests check instead of their figures."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
