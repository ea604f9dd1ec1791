"""Local servers on 127.0.0.1: the Prefect server, the serve process, the MLflow UI.

    python -m flows.servers start     # Prefect server + the process serving every deployment
    python -m flows.servers ui        # MLflow UI over mlruns/ (one worker, no job runner: ~300 MB)
    python -m flows.servers status    # what runs, where; `eval "$(python -m flows.servers env)"` for other shells
    python -m flows.servers stop      # stops everything this folder's state file lists

PIDs, ports and logs live in ``servers.state_dir`` (``.flows/``, git-ignored) and Prefect's
own database in ``.flows/prefect`` (``PREFECT_HOME``). Ports come from ``params/flows.yaml``;
a taken port is replaced by a free one (``status`` prints the URLs). Every process is started
in its own session and stopped as a process group (SIGTERM, then SIGKILL after 20 s).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from flows import config

DEPLOYMENT_CHECK = ("train-quartznet", "benchmark-nightly")


def _free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(host: str, wanted: int) -> int:
    if wanted and _free(host, wanted):
        return wanted
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Servers:
    def __init__(self, repo: Path):
        self.repo = repo.resolve()
        self.cfg = config.load(self.repo)["servers"]
        self.host = self.cfg["host"]
        self.dir = self.repo / self.cfg["state_dir"]
        self.state_file = self.dir / "servers.json"

    # ---- state ---------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        if not self.state_file.is_file():
            return {}
        return json.loads(self.state_file.read_text(encoding="utf-8"))

    def _save(self, state: dict[str, Any]) -> None:
        from asr_core.io.atomic import atomic_write_json

        atomic_write_json(self.state_file, state)

    @staticmethod
    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()

    def env(self) -> dict[str, str]:
        from tasks.offline import OFFLINE_ENV

        env = dict(os.environ)
        env.update(OFFLINE_ENV)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["PREFECT_HOME"] = str(self.dir / "prefect")
        env["PYTHONUNBUFFERED"] = "1"
        prefect = self.state().get("prefect")
        if prefect:
            env["PREFECT_API_URL"] = prefect["url"] + "/api"
        return env

    def _spawn(self, name: str, cmd: list[str], port: int, url: str) -> dict[str, Any]:
        self.dir.mkdir(parents=True, exist_ok=True)
        log = self.dir / f"{name}.log"
        with open(log, "ab") as f:
            proc = subprocess.Popen(
                cmd,
                cwd=self.repo,
                env=self.env(),
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        entry = {"pid": proc.pid, "port": port, "url": url, "log": str(log), "cmd": cmd}
        state = self.state()
        state[name] = entry
        self._save(state)
        return entry

    def _wait(self, name: str, ready, what: str) -> None:
        entry = self.state()[name]
        deadline = time.monotonic() + float(self.cfg["start_timeout_s"])
        while time.monotonic() < deadline:
            if not self.alive(entry["pid"]):
                tail = Path(entry["log"]).read_text(errors="replace").splitlines()[-30:]
                raise RuntimeError(f"{name} exited during start-up; {entry['log']} ends with:\n" + "\n".join(tail))
            if ready():
                return
            time.sleep(1.0)
        raise TimeoutError(f"{name}: {what} not ready after {self.cfg['start_timeout_s']} s (see {entry['log']})")

    def _rel(self, name: str) -> str:
        log = Path(self.state()[name]["log"])
        return str(log.relative_to(self.repo)) if log.is_relative_to(self.repo) else str(log)

    def running(self, name: str) -> dict[str, Any] | None:
        entry = self.state().get(name)
        return entry if entry and self.alive(entry["pid"]) else None

    # ---- commands ------------------------------------------------------------------------
    def start(self, serve: bool = True) -> None:
        if not self.running("prefect"):
            port = pick_port(self.host, int(self.cfg["prefect_port"]))
            url = f"http://{self.host}:{port}"
            self._spawn(
                "prefect",
                [
                    sys.executable,
                    "-m",
                    "prefect",
                    "server",
                    "start",
                    "--host",
                    self.host,
                    "--port",
                    str(port),
                    "--no-background",
                    "--analytics-off",
                ],
                port,
                url,
            )
            self._wait("prefect", lambda: _get(url + "/api/health") is not None, "the Prefect API")
        api = self.state()["prefect"]["url"] + "/api"
        print(f"Prefect server: {self.state()['prefect']['url']}  (log {self._rel('prefect')})")
        if serve and not self.running("serve"):
            self._spawn("serve", [sys.executable, "-m", "flows.serve"], 0, api)
            names = config.load(self.repo)["flows"]["deployments"]
            self._wait("serve", lambda: all(_deployment(api, f, names) for f in DEPLOYMENT_CHECK), "the deployments")
        if serve:
            names = config.load(self.repo)["flows"]["deployments"]
            print(f"serve process: pid {self.state()['serve']['pid']}  (log {self._rel('serve')})")
            print("deployments: " + ", ".join(f"{flow}/{name}" for flow, name in names.items()))
        print(f"export PREFECT_API_URL={api}")

    def ui(self) -> None:
        if not self.running("mlflow"):
            from tasks.tracking import tracking_uri

            port = pick_port(self.host, int(self.cfg["mlflow_port"]))
            url = f"http://{self.host}:{port}"
            self._spawn(
                "mlflow",
                [
                    sys.executable,
                    "-m",
                    "mlflow",
                    "ui",
                    "--backend-store-uri",
                    tracking_uri(),
                    "--host",
                    self.host,
                    "--port",
                    str(port),
                    "--workers",
                    "1",
                ],
                port,
                url,
            )
            self._wait("mlflow", lambda: _get(url + "/health") is not None, "the MLflow UI")
        print(f"MLflow UI: {self.state()['mlflow']['url']}  (log {self._rel('mlflow')})")

    def stop(self) -> None:
        state = self.state()
        for name in ("serve", "mlflow", "prefect"):
            entry = state.pop(name, None)
            if entry is None:
                continue
            if self.alive(entry["pid"]) and not _is_ours(entry):
                print(f"{name}: pid {entry['pid']} is no longer the process started here; left alone")
                continue
            stop_group(entry["pid"])
            print(f"stopped {name} (pid {entry['pid']})")
        self._save(state)

    def status(self) -> int:
        state, down = self.state(), 0
        for name in ("prefect", "serve", "mlflow"):
            entry = state.get(name)
            if entry and self.alive(entry["pid"]):
                print(f"{name:8s} running  pid {entry['pid']:<8d} {entry['url']}")
            else:
                down += 1
                print(f"{name:8s} stopped")
        if self.running("prefect"):
            print(f"export PREFECT_API_URL={state['prefect']['url']}/api")
        return down


def _is_ours(entry: dict[str, Any]) -> bool:
    """The live process ``entry['pid']`` still runs the command started here (no reused PID)."""
    try:
        argv = Path(f"/proc/{entry['pid']}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    return entry["cmd"][1:] == [a for a in argv if a][1:]


def stop_group(pid: int, grace_s: float = 20.0) -> None:
    """SIGTERM the process group ``pid`` leads (started with start_new_session), SIGKILL if it lingers."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.3)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _get(url: str, timeout: float = 3.0) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read() if r.status == 200 else None
    except (urllib.error.URLError, OSError):
        return None


def _deployment(api: str, flow_name: str, names: dict[str, str]) -> bool:
    name = names[flow_name]
    return _get(f"{api}/deployments/name/{flow_name}/{name}") is not None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["start", "ui", "stop", "status", "env"])
    p.add_argument("--no-serve", action="store_true", help="start: the Prefect server only")
    args = p.parse_args(argv)
    s = Servers(Path.cwd())
    if args.command == "start":
        s.start(serve=not args.no_serve)
    elif args.command == "ui":
        s.ui()
    elif args.command == "stop":
        s.stop()
    elif args.command == "status":
        return 1 if s.status() == 3 else 0
    else:
        entry = s.running("prefect")
        if entry is None:
            print("error: the Prefect server is not running (python -m flows.servers start)", file=sys.stderr)
            return 1
        print(f"export PREFECT_API_URL={entry['url']}/api")
    return 0


if __name__ == "__main__":
    sys.exit(main())
