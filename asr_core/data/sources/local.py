"""Helpers shared by the local sources (Common Voice, TED-LIUM, bring-your-own manifests)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, Mapping

from asr_core.io import atomic_write_json

log = logging.getLogger(__name__)


def config_from_dict(cls: type, d: Mapping[str, Any]):
    """Build the config dataclass ``cls`` from a plain mapping; unknown or missing keys raise, naming them."""
    if not isinstance(d, Mapping):
        raise TypeError(f"{cls.__name__}: expected a mapping of options, got {type(d).__name__}")
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown key(s) {unknown}; known keys: {known}")
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    missing = [k for k in required if k not in d]
    if missing:
        raise ValueError(f"{cls.__name__}: missing required key(s) {missing}")
    return cls(**d)


def check_splits(splits: Any, owner: str) -> dict[str, str]:
    """Validate a ``{split name: file or folder}`` mapping; return a plain dict copy."""
    if not isinstance(splits, Mapping):
        raise ValueError(f"{owner}.splits must be a mapping of split name -> path, got {splits!r}")
    out: dict[str, str] = {}
    for name, value in splits.items():
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{owner}.splits: split names must be non-empty strings, got {name!r}")
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{owner}.splits[{name!r}] must be a non-empty path string, got {value!r}")
        out[name] = value
    return out


def check_path(value: Any, owner: str) -> str:
    """Validate a config ``path`` field; ``os.PathLike`` becomes ``str`` so ``to_dict`` stays plain."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{owner}.path must be a non-empty path string, got {value!r}")
    return value


def local_or_extracted(path: str, out_dir: Path, owner: str) -> tuple[Path, bool]:
    """Resolve a source ``path``: a folder is read in place, a file is a tarball extracted into ``out_dir``.

    Returns ``(folder, extracted)``. The archive is extracted (safely, all or nothing)
    into ``out_dir/extracted``; ``out_dir/extracted.json`` records which archive
    (path, size, mtime), so a re-run with the same archive reuses the extraction and a
    different archive is refused rather than mixed in.
    """
    src = Path(path).expanduser()
    if src.is_dir():
        return Path(os.path.abspath(src)), False
    if not src.exists():
        raise FileNotFoundError(f"{src}: not found ({owner}.path = {path!r}); give a folder or a tarball")
    from asr_core.data.download.archive import safe_extract_tar

    out_dir = Path(out_dir)
    dest, marker = out_dir / "extracted", out_dir / "extracted.json"
    st = src.stat()
    stamp = {"archive": os.path.abspath(src), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if dest.exists():
        try:
            previous = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = None
        if previous != stamp:
            raise FileExistsError(
                f"{dest} exists but was not extracted from {src} as it is now "
                f"(recorded: {previous}); delete {dest} to extract again"
            )
        log.info("%s: reusing the extraction in %s", src, dest)
        return dest, True
    atomic_write_json(marker, stamp)  # dest appears atomically, so dest + this marker = a whole extraction
    log.info("extracting %s into %s", src, dest)
    safe_extract_tar(src, dest)
    return dest, True


def audio_ref(audio: Path, out_dir: Path, extracted: bool) -> str:
    """The item's ``audio`` value: relative to ``out_dir`` for extracted data, absolute when read in place."""
    if extracted:
        return Path(audio).relative_to(out_dir).as_posix()
    return os.path.abspath(audio)
