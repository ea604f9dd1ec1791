"""A flow run's own workspace: a git worktree of the user's checkout that shares its DVC cache.

Why a worktree rather than ``dvc exp run --temp`` / ``--queue``: the flows run each DVC stage as
its own Prefect task (own logs, retries, Skipped states, one MLflow child per stage), which an
experiment runner that executes the whole pipeline in one call would hide; a worktree is an
ordinary DVC workspace, so ``dvc repro --single-item`` works there unchanged. What it shares:

- the DVC cache (``cache.dir`` of the user's checkout), so data stages already built anywhere are
  restored from DVC's run-cache instead of rebuilt, and outputs are linked, not copied, where the
  file system allows (``cache.type reflink,hardlink,copy``);
- the git object store and refs: at the end the run is recorded as a DVC experiment
  (``dvc exp save``), so ``dvc exp show`` in the user's checkout lists it with its params and
  metrics, and ``dvc exp apply <name>`` brings its outputs into the workspace;
- the MLflow store (``MLFLOW_TRACKING_URI`` of the user's checkout) and the resumable training
  checkpoints (``checkpoints/``, keyed by params fingerprint).

The workspace stays after the run (its outputs are links into the DVC cache, so it costs little
disk): the ``flows.keep_workspaces`` newest are kept, older ones are removed when a run starts.

The worktree starts from ``HEAD`` plus the user's uncommitted edits of tracked files and their
untracked, not ignored, files (a new params profile), copied at the start: later edits in the
user's checkout do not reach a running flow, and the flow writes nothing there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tasks.dvc_stage import dvc_executable, subprocess_env

RUNS_DIR = Path(".flows") / "runs"
CARRY_MAX_BYTES = 50 * 2**20  # a bigger untracked file is not carried into the run (named in the log)


@dataclass(frozen=True)
class Workspace:
    repo: Path  # the user's checkout
    path: Path  # the run's worktree
    name: str  # the run's name: worktree folder and DVC experiment

    def env(self) -> dict[str, str]:
        """What every stage of the run needs: the user's MLflow store and checkpoint root."""
        return {
            "MLFLOW_TRACKING_URI": os.environ.get("MLFLOW_TRACKING_URI")
            or f"sqlite:///{self.repo / 'mlruns' / 'mlflow.db'}",
            "ASR_CHECKPOINTS": str(self.repo / "checkpoints"),
        }


def _git(args: list[str], cwd: Path) -> str:
    r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout


def _dvc(args: list[str], cwd: Path) -> str:
    r = subprocess.run([dvc_executable(), *args], cwd=cwd, env=subprocess_env(), capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(args)} failed in {cwd}: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout


def _uncommitted(repo: Path) -> tuple[list[str], list[str]]:
    """(changed or untracked-not-ignored files, deleted files), relative to ``repo``."""
    out = _git(["status", "--porcelain=v1", "-z", "--untracked-files=all"], repo).split("\0")
    changed, deleted = [], []
    i = 0
    while i < len(out):
        entry = out[i]
        i += 1
        if len(entry) < 4:
            continue
        xy, path = entry[:2], entry[3:]
        if "R" in xy or "C" in xy:
            i += 1  # the rename's source follows
        if "D" in xy:
            deleted.append(path)
        else:
            changed.append(path)
    return changed, deleted


def create(repo: Path, name: str, log: Callable[[str], None] = print, keep: int | None = None) -> Workspace:
    """A new worktree ``<repo>/.flows/runs/<name>`` at ``HEAD`` with the user's uncommitted edits, held
    (:func:`hold`) until :func:`release`; with ``keep``, older workspaces beyond the ``keep`` newest
    are pruned first."""
    repo = repo.resolve()
    if keep is not None:
        prune(repo, keep, log=log)
    path = repo / RUNS_DIR / name
    if path.exists():
        raise FileExistsError(f"run workspace {path} exists already (a run of the same name?)")
    path.parent.mkdir(parents=True, exist_ok=True)
    ws = Workspace(repo=repo, path=path, name=name)
    hold(ws)
    _git(["worktree", "add", "--quiet", "--detach", str(path), "HEAD"], repo)
    changed, deleted = _uncommitted(repo)
    carried, skipped = [], []
    for rel in changed:
        src = repo / rel
        if rel.startswith(str(RUNS_DIR)) or not src.is_file():
            continue
        if src.stat().st_size > CARRY_MAX_BYTES:
            skipped.append(rel)
            continue
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, path / rel)
        carried.append(rel)
    for rel in deleted:
        (path / rel).unlink(missing_ok=True)
    if carried or deleted:
        log(f"run workspace: carried uncommitted changes: {', '.join(carried + [f'-{d}' for d in deleted])}")
    if skipped:
        log(f"run workspace: not carried (over {CARRY_MAX_BYTES >> 20} MiB, untracked): {', '.join(skipped)}")
    linked = _link_outputs(repo, path)
    if linked:
        log(f"run workspace: linked the checkout's DVC outputs: {', '.join(linked)}")
    local = repo / ".dvc" / "config.local"
    if local.is_file():
        shutil.copy2(local, path / ".dvc" / "config.local")
    cache = _dvc(["cache", "dir"], repo).strip()
    _dvc(["config", "--local", "cache.dir", cache], path)
    _dvc(["config", "--local", "cache.type", "reflink,hardlink,copy"], path)
    log(f"run workspace: {path} (git worktree at HEAD {_git(['rev-parse', '--short', 'HEAD'], repo).strip()})")
    return ws


def existing(path: str | None, repo: Path | None = None) -> Workspace | None:
    """The :class:`Workspace` of a run workspace folder made by :func:`create` (None for None)."""
    if path is None:
        return None
    p = Path(path).resolve()
    root = (repo or Path.cwd()).resolve()
    if p.parent != root / RUNS_DIR or not (p / ".git").is_file():
        raise ValueError(f"workspace {path!r}: not a run workspace under {root / RUNS_DIR}")
    return Workspace(repo=root, path=p, name=p.name)


def link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def link_tree(src: Path, dst: Path) -> None:
    """``src`` (a file or a folder) at ``dst`` as hard links, copies where links cannot be made."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, copy_function=link_or_copy, symlinks=True)
    else:
        link_or_copy(str(src), str(dst))


def _link_outputs(repo: Path, ws: Path) -> list[str]:
    """Hard-link the outputs ``dvc.lock`` records in the checkout into the workspace, so that a stage
    whose inputs are unchanged is skipped there as it would be in the checkout (DVC's run-cache does
    not restore every stage: those with uncached outputs such as the reports folders are rerun).
    Safe for the checkout: DVC deletes a stage's outputs before running it, so a stage writes new
    files rather than through the links; a changed output is seen by DVC as changed."""
    import yaml

    lock_path = ws / "dvc.lock"
    if not lock_path.is_file():
        return []
    lock = yaml.safe_load(lock_path.read_text(encoding="utf-8")) or {}
    linked = []
    for entry in (lock.get("stages") or {}).values():
        for out in entry.get("outs") or []:
            rel = out.get("path")
            src, dst = repo / rel, ws / rel
            if not rel or dst.exists() or not src.exists():
                continue
            link_tree(src, dst)
            linked.append(rel)
    return linked


def save_experiment(ws: Workspace, stages: list[str], log: Callable[[str], None] = print) -> str:
    """Record the run as DVC experiment ``ws.name`` (params, ``dvc.lock``, metrics files) with the
    outputs of ``stages`` (the stages it ran: the others' outputs may not exist there)."""
    import fcntl

    if (ws.path / "reports").is_dir():  # git-ignored (metrics and uncached outputs of the stages): the
        _git(["add", "--force", "reports"], ws.path)  # experiment commit holds them for `dvc exp show`/`apply`
    # `dvc exp save` goes through git's shared refs/stash: one workspace at a time
    with open(ws.repo / ".flows" / "exp-save.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _dvc(["exp", "save", "--force", "--name", ws.name, *stages], ws.path)
    log(f"DVC experiment {ws.name!r} saved: `dvc exp show` lists it, `dvc exp apply {ws.name}` restores its outputs")
    return ws.name


def remove(ws: Workspace, log: Callable[[str], None] = print) -> None:
    """Remove the worktree (its outputs are in the DVC cache and the experiment)."""
    release(ws)
    try:
        _git(["worktree", "remove", "--force", str(ws.path)], ws.repo)
    except RuntimeError as e:
        log(f"run workspace {ws.path} not removed: {e}")
        return
    _git(["worktree", "prune"], ws.repo)
    (ws.repo / RUNS_DIR / f"{ws.name}.lock").unlink(missing_ok=True)


_HELD: dict[str, object] = {}  # run name -> open lock file, for the life of the run


def hold(ws: Workspace) -> None:
    """Mark the workspace as in use (an ``flock`` beside it) so that :func:`prune` leaves it alone."""
    import fcntl

    f = open(ws.repo / RUNS_DIR / f"{ws.name}.lock", "w")  # noqa: SIM115 (held until release)
    fcntl.flock(f, fcntl.LOCK_EX)
    _HELD[ws.name] = f


def release(ws: Workspace) -> None:
    f = _HELD.pop(ws.name, None)
    if f is not None:
        f.close()


def _in_use(repo: Path, name: str) -> bool:
    import fcntl

    path = repo / RUNS_DIR / f"{name}.lock"
    if not path.is_file():
        return False
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def prune(repo: Path, keep: int, log: Callable[[str], None] = print) -> list[str]:
    """Remove all but the ``keep`` newest run workspaces not in use; returns the names removed."""
    repo = repo.resolve()
    folder = repo / RUNS_DIR
    runs = sorted(
        (p for p in folder.iterdir() if p.is_dir() and (p / ".git").is_file()) if folder.is_dir() else [],
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    removed = []
    for p in runs[keep:]:
        if _in_use(repo, p.name):
            continue
        remove(Workspace(repo=repo, path=p, name=p.name), log=log)
        removed.append(p.name)
    if removed:
        log(f"run workspaces pruned (flows.keep_workspaces={keep}): {', '.join(removed)}")
    return removed


def find_output(repo: Path, rel: str) -> Path | None:
    """``rel`` (an output such as ``models/wav2vec2_pretrain/model.pt``) in the user's checkout, else in
    the newest run workspace that has it; None when there is none."""
    repo = repo.resolve()
    if (repo / rel).exists():
        return repo / rel
    folder = repo / RUNS_DIR
    runs = sorted(
        (p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else [],
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    return next((p / rel for p in runs if (p / rel).exists()), None)
