"""Flow parameters that override params values for one flow run.

Mechanism (README, "Overrides"): for the length of the flow run the overridden values are
written into the stage's params file (``train.loop.max_steps`` -> ``params/train.yaml``), so
``dvc repro`` sees them as ordinary params and ``dvc.lock`` records the values the outputs
were really made with. When the run ends (success or failure) the committed text of every
touched file is put back byte for byte. Afterwards ``dvc status`` reports those params as
changed: the workspace outputs were made with the overrides, and a plain ``dvc repro``
rebuilds them from the committed values (or restores them from DVC's run-cache).

The original text is kept under ``.flows/overrides/`` while a run holds the files; a run that
was killed leaves it there, and the next run puts it back first (only if the file still holds
exactly what the killed run wrote; anything else is refused with both paths named).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from asr_core.io.atomic import atomic_write_text

BACKUP_DIR = Path(".flows") / "overrides"


def split_key(key: str) -> tuple[str, list[str]]:
    """``"train.loop.max_steps"`` -> ``("params/train.yaml", ["train", "loop", "max_steps"])``."""
    parts = key.split(".")
    if len(parts) < 2 or not all(parts):
        raise ValueError(f"override {key!r}: expected <stage>.<field>[.<field>...], e.g. train.loop.max_steps")
    return f"params/{parts[0]}.yaml", parts


def apply_to(data: dict, parts: list[str], value: Any, where: str) -> None:
    node = data
    for i, p in enumerate(parts[:-1]):
        if not isinstance(node.get(p), dict):
            raise ValueError(
                f"{where}: override {'.'.join(parts)!r}: "
                f"{'.'.join(parts[: i + 1])!r} is not a mapping in the params file"
            )
        node = node[p]
    node[parts[-1]] = copy.deepcopy(value)


def plan(repo: Path, overrides: Mapping[str, Any]) -> dict[str, dict]:
    """The new content of every params file the overrides touch (validated, nothing written)."""
    out: dict[str, dict] = {}
    for key, value in overrides.items():
        rel, parts = split_key(key)
        path = repo / rel
        if not path.is_file():
            raise FileNotFoundError(f"override {key!r}: params file {rel} not found")
        if rel not in out:
            out[rel] = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        apply_to(out[rel], parts, value, rel)
    return out


def _write(target: Path, text: str) -> None:
    """Atomic write that keeps the file's permission bits (a temp file starts as 0600)."""
    mode = target.stat().st_mode & 0o7777 if target.exists() else None
    atomic_write_text(target, text)
    if mode is not None:
        os.chmod(target, mode)


def _backup_paths(repo: Path, rel: str) -> tuple[Path, Path]:
    base = repo / BACKUP_DIR / rel.replace("/", "__")
    return base.with_name(base.name + ".orig"), base.with_name(base.name + ".applied")


def recover(repo: Path, log: Callable[[str], None] = print) -> list[str]:
    """Put back params files left overridden by a killed flow run; returns the files restored."""
    restored = []
    folder = repo / BACKUP_DIR
    for orig in sorted(folder.glob("*.orig")) if folder.is_dir() else []:
        rel = orig.name[: -len(".orig")].replace("__", "/")
        applied = orig.with_name(orig.name[: -len(".orig")] + ".applied")
        target = repo / rel
        current = target.read_text(encoding="utf-8") if target.is_file() else None
        if applied.is_file() and current == applied.read_text(encoding="utf-8"):
            _write(target, orig.read_text(encoding="utf-8"))
            log(f"restored {rel}: an interrupted flow run had left overrides in it")
        elif current != orig.read_text(encoding="utf-8"):
            raise RuntimeError(
                f"{rel} was edited while holding overrides of an interrupted flow run; "
                f"its committed text is in {orig}: put back what you want, then delete {orig}"
            )
        orig.unlink()
        applied.unlink(missing_ok=True)
        restored.append(rel)
    return restored


@contextlib.contextmanager
def overridden_params(
    repo: str | Path, overrides: Mapping[str, Any] | None, log: Callable[[str], None] = print
) -> Iterator[dict[str, Any]]:
    """Write the overrides into the params files for the ``with`` block, then restore them."""
    repo = Path(repo)
    recover(repo, log)
    overrides = dict(overrides or {})
    new = plan(repo, overrides)
    written: list[tuple[Path, str, Path, Path]] = []
    try:
        for rel, data in new.items():
            target = repo / rel
            original = target.read_text(encoding="utf-8")
            orig_bak, applied_bak = _backup_paths(repo, rel)
            text = f"# overridden by a flow run: {json.dumps(overrides, sort_keys=True)}\n" + yaml.safe_dump(
                data, sort_keys=False
            )
            atomic_write_text(orig_bak, original)
            atomic_write_text(applied_bak, text)
            _write(target, text)
            written.append((target, original, orig_bak, applied_bak))
            log(
                f"params override for this run: {rel} <- "
                + ", ".join(f"{k}={v!r}" for k, v in overrides.items() if split_key(k)[0] == rel)
            )
        yield overrides
    finally:
        for target, original, orig_bak, applied_bak in reversed(written):
            applied = applied_bak.read_text(encoding="utf-8") if applied_bak.is_file() else None
            if target.read_text(encoding="utf-8") != applied:  # someone edited it meanwhile: keep their text
                log(
                    f"{target.relative_to(repo)} changed during the flow run: left as it is; "
                    f"its committed text is in {orig_bak}"
                )
                continue
            _write(target, original)
            orig_bak.unlink(missing_ok=True)
            applied_bak.unlink(missing_ok=True)
        if written:
            log(
                "params files restored to their committed text: "
                + ", ".join(str(w[0].relative_to(repo)) for w in written)
            )
