"""docs/orchestration.md "Multi-node" as a user runs it: a Ray head with token authentication, a
second node joining it with the head's token, then the train stage on that cluster with 2 workers
(DDP over gloo: both ranks' state in the checkpoints, rank 0's metrics in MLflow).

Both nodes run on this machine (one CPU each, so the two workers land on different nodes), each
with its own temp dir, ports and HOME: a Ray that someone else runs here is neither joined nor
stopped. ``ray stop`` would stop every Ray on the machine, so the teardown ends only the
processes this test started (marked through their environment) and what they started.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from asr_core.testing import make_corpus
from asr_core.train.checkpoint import load_checkpoint
from tasks.tracking import EXPERIMENT
from tests import REPO
from tests.support import tiny_train_params

RAY = shutil.which("ray", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
MARK = "ASR_TEST_RAY_CLUSTER"  # environment marker of the processes to end in the teardown

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(RAY is None, reason="the `ray` command line (ray[train]) is not installed"),
]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _node_flags(temp_dir: Path) -> list[str]:
    """Flags of both nodes: small, and every port that has a fixed default chosen free."""
    nm, om, agent_http, agent_grpc, env_agent, metrics = _free_ports(6)
    return [
        f"--temp-dir={temp_dir}",
        "--num-cpus=1",
        f"--object-store-memory={80 * 2**20}",
        f"--node-manager-port={nm}",
        f"--object-manager-port={om}",
        f"--dashboard-agent-listen-port={agent_http}",
        f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--runtime-env-agent-port={env_agent}",
        f"--metrics-export-port={metrics}",
        "--disable-usage-stats",
    ]


class Cluster:
    """Processes started here carry ``MARK=<id>`` in their environment; :meth:`stop` ends them."""

    def __init__(self, root: Path):
        self.root, self.id = root, uuid.uuid4().hex

    def env(self, home: Path, **extra: str) -> dict[str, str]:
        """This machine's environment without any Ray token settings of the user's, plus ``extra``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS"))}
        home.mkdir(parents=True, exist_ok=True)
        env.update(HOME=str(home), RAY_USAGE_STATS_ENABLED="0", **{MARK: self.id}, **extra)
        return env

    def run(self, args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)

    def processes(self) -> list:
        """Marked processes and all their descendants (Ray's agents rewrite their environ, not their parent)."""
        import psutil

        found: dict[int, psutil.Process] = {}
        for p in psutil.process_iter():
            try:
                if p.environ().get(MARK) == self.id:
                    found[p.pid] = p
                    found.update({c.pid: c for c in p.children(recursive=True)})
            except (psutil.Error, OSError):
                pass
        found.pop(os.getpid(), None)
        return list(found.values())

    def stop(self) -> list[str]:
        """End every process of this cluster: SIGTERM, then SIGKILL after 5 s; the names of those left."""
        import psutil

        procs = self.processes()
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.terminate()
        _, alive = psutil.wait_procs(procs, timeout=5)
        for p in alive + self.processes():
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(alive, timeout=5)
        left = []
        for p in self.processes():
            with contextlib.suppress(psutil.Error):
                left.append(f"{p.pid} {p.name()}")
        return left


@pytest.fixture
def cluster():
    # AF_UNIX socket paths are limited to 107 bytes: the session folder needs a short root
    root = Path(tempfile.mkdtemp(prefix="asr-ray-"))
    c = Cluster(root)
    try:
        yield c
    finally:
        left = c.stop()
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"Ray processes left behind: {left}"


def _params(tmp_path: Path, corpus: Path, address: str, steps: int) -> Path:
    """On the cluster at ``address``: 2 workers, 1 CPU each."""
    ray = {
        "address": address,
        "num_workers": 2,
        "resources_per_worker": {"CPU": 1},
        "torch_threads": 1,
        "storage_path": str(tmp_path / "ray_results"),
    }
    return tiny_train_params(tmp_path, corpus, "cluster_test", ray, steps, eval_every=steps)


def test_ray_cluster_head_and_joining_node_with_token_then_train_stage(cluster, tmp_path):
    t0 = time.monotonic()
    head_home, node_home = cluster.root / "head_home", cluster.root / "node_home"
    gcs, dashboard = _free_ports(2)
    address = f"127.0.0.1:{gcs}"

    # head: the token (created in ~/.ray/auth_token), then `RAY_AUTH_MODE=token ray start --head`
    r = cluster.run([RAY, "get-auth-token", "--generate"], cluster.env(head_home))
    assert r.returncode == 0, r.stderr
    token_file = head_home / ".ray" / "auth_token"
    token = r.stdout.strip()
    assert token and token_file.read_text().strip() == token
    head = [RAY, "start", "--head", f"--port={gcs}", f"--dashboard-port={dashboard}", "--include-dashboard=false"]
    r = cluster.run([*head, *_node_flags(cluster.root / "head")], cluster.env(head_home, RAY_AUTH_MODE="token"))
    assert r.returncode == 0, r.stdout + r.stderr

    # another node with its own HOME (no token file): RAY_AUTH_MODE=token and the token in RAY_AUTH_TOKEN
    # (without RAY_AUTH_MODE it is refused, "Authentication token is missing or incorrect", after ~20 s)
    join = [RAY, "start", f"--address={address}", *_node_flags(cluster.root / "node")]
    r = cluster.run(join, cluster.env(node_home, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token))
    assert r.returncode == 0, r.stdout + r.stderr

    # `ray status` from a shell with the token in a file named by RAY_AUTH_TOKEN_PATH: two active nodes
    status_env = cluster.env(tmp_path / "home", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file))
    # (the status report lags the nodes' start by a few seconds on a loaded machine: ask until both show)
    deadline = time.monotonic() + 60
    while True:
        r = cluster.run([RAY, "status", f"--address={address}"], status_env)
        assert r.returncode == 0, r.stdout + r.stderr
        active = r.stdout.split("Active:")[1].split("Pending:")[0] if "Active:" in r.stdout else ""
        if len(re.findall(r"^ 1 node_\w+$", active, flags=re.M)) == 2 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert len(re.findall(r"^ 1 node_\w+$", active, flags=re.M)) == 2, r.stdout
    assert re.search(r"^ 0\.0/2\.0 CPU$", r.stdout, flags=re.M), r.stdout
    t_cluster = time.monotonic() - t0

    # the train stage on the head node (token from ~/.ray/auth_token), `ray.address` set: 2 workers of
    # 1 CPU each need both nodes
    corpus = make_corpus(tmp_path / "corpus", splits=(("train", 8), ("dev", 2)))
    params = _params(tmp_path, corpus, address, steps=4)
    out, report = tmp_path / "models", tmp_path / "train.json"
    stage = [sys.executable, "-m", "tasks.train", "--params", str(params), "--out", str(out), "--report", str(report)]
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    r = cluster.run(stage, cluster.env(head_home, RAY_AUTH_MODE="token", MLFLOW_TRACKING_URI=store), timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    rep = json.loads(report.read_text())
    assert rep["steps"] == 4 and rep["world_size"] == 2 and rep["stopped_by"] == "max_steps"
    assert (out / "cluster_test" / "model.pt").is_file()
    ck = load_checkpoint(out / "cluster_test" / "checkpoints" / "ckpt-00000004.pt")
    assert ck["world_size"] == 2 and len(ck["rng"]) == 2  # both ranks' RNG streams, for an exact resume
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id], "tags.stage = 'train'")
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 4  # logged from rank 0's Ray worker
    print(f"cluster up in {t_cluster:.1f} s, with training {time.monotonic() - t0:.1f} s")
