"""Bring-your-own manifests, plus the helpers the local sources share.

``ManifestConfig(splits={"train": "lists/train.jsonl", ...})`` maps a split name to
a list file (relative to the working directory). The suffix picks the format:

- ``.jsonl`` / ``.json``: JSON-lines in NeMo style, one object per line with
  ``audio_filepath`` and ``text`` (required) and ``duration``, ``offset``,
  ``utt_id``, ``speaker`` (optional). Other keys are ignored (NeMo manifests carry
  extras such as ``lang``).
- ``.tsv`` / ``.txt``: ``path<TAB>transcript`` per line, with an optional first
  line ``path<TAB>text`` as header. Only the first tab splits.

Relative audio paths resolve against the list file's folder; items carry absolute
paths. ``utt_id`` defaults to the audio file stem and is kept as is even when
repeated: the prepare stage quarantines duplicate ids. Blank lines are skipped; a
line missing a required field raises ``ValueError`` naming ``file:line`` and the
field. Text is kept as written (normalised later, in prepare).

"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from tqdm import tqdm

from asr_core.data.items import SourceItem
from asr_core.data.sources.local import check_splits, config_from_dict

log = logging.getLogger(__name__)

JSONL_SUFFIXES = (".jsonl", ".json")
TSV_SUFFIXES = (".tsv", ".txt")


@dataclass(frozen=True)
class ManifestConfig:
    splits: dict[str, str] = field(default_factory=dict)  # split name -> list file

    def __post_init__(self) -> None:
        object.__setattr__(self, "splits", check_splits(self.splits, "ManifestConfig"))
        if not self.splits:
            raise ValueError("ManifestConfig.splits: give at least one split, e.g. {'train': 'train.jsonl'}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ManifestConfig":
        return config_from_dict(cls, d)


def fetch_manifest(cfg: ManifestConfig, out_dir: Path, progress: bool = True) -> list[SourceItem]:
    """Read every split's list file; ``out_dir`` is unused (items hold absolute paths)."""
    readers = {}
    for split, name in cfg.splits.items():  # check all before reading any
        path = Path(name).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{path}: manifest not found (ManifestConfig.splits[{split!r}] = {name!r})")
        suffix = path.suffix.lower()
        if suffix not in JSONL_SUFFIXES + TSV_SUFFIXES:
            raise ValueError(
                f"{path}: unknown manifest suffix {path.suffix!r} (ManifestConfig.splits[{split!r}]); "
                f"use {' / '.join(JSONL_SUFFIXES)} for JSON-lines or {' / '.join(TSV_SUFFIXES)} for path<TAB>text"
            )
        readers[split] = (path, _read_jsonl_rows if suffix in JSONL_SUFFIXES else _read_tsv_rows)
    items: list[SourceItem] = []
    for split, (path, read_rows) in readers.items():
        n0 = len(items)
        base = Path(os.path.abspath(path.parent))
        for row in tqdm(read_rows(path), desc=f"manifest {split}", unit=" lines", disable=not progress):
            audio = Path(row["audio"]).expanduser()
            audio = Path(os.path.abspath(audio if audio.is_absolute() else base / audio))
            items.append(
                SourceItem(
                    utt_id=row.get("utt_id") or audio.stem,
                    split=split,
                    audio=str(audio),
                    text=row["text"],
                    speaker=row.get("speaker", ""),
                    offset=row.get("offset", 0.0),
                    duration=row.get("duration"),
                )
            )
        log.info("manifest %s: %d items from %s", split, len(items) - n0, path)
    return items


def _read_jsonl_rows(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: invalid JSON ({e.msg}); expected one object per line") from e
            if not isinstance(obj, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
            row = {
                "audio": _field_str(obj, "audio_filepath", where, required=True, empty_ok=False),
                "text": _field_str(obj, "text", where, required=True, empty_ok=True),
                "utt_id": _field_str(obj, "utt_id", where, required=False, empty_ok=False),
                "speaker": _field_str(obj, "speaker", where, required=False, empty_ok=True) or "",
                "offset": _field_seconds(obj, "offset", where) or 0.0,
                "duration": _field_seconds(obj, "duration", where),
            }
            if row["duration"] is not None and row["duration"] <= 0:
                raise ValueError(f"{where}: field 'duration' must be > 0, got {row['duration']!r}")
            yield row


def _read_tsv_rows(path: Path) -> Iterator[dict[str, Any]]:
    first = True
    with open(path, encoding="utf-8-sig", newline="") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if first and line.strip().lower() in ("path\ttext", "path\ttranscript"):
                first = False
                continue
            first = False
            where = f"{path}:{lineno}"
            audio, tab, text = line.partition("\t")
            if not audio.strip():
                raise ValueError(f"{where}: missing field 'path' (expected path<TAB>transcript)")
            if not tab:
                raise ValueError(f"{where}: missing field 'text': no tab after the path (expected path<TAB>text)")
            yield {"audio": audio.strip(), "text": text}


def _field_str(obj: dict, key: str, where: str, required: bool, empty_ok: bool) -> str | None:
    if key not in obj or obj[key] is None:
        if required:
            raise ValueError(f"{where}: missing required field {key!r}")
        return None
    value = obj[key]
    if not isinstance(value, str):
        raise ValueError(f"{where}: field {key!r} must be a string, got {value!r}")
    if not empty_ok and not value.strip():
        raise ValueError(f"{where}: field {key!r} is empty")
    return value


def _field_seconds(obj: dict, key: str, where: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != value:
        raise ValueError(f"{where}: field {key!r} must be a non-negative number of seconds, got {value!r}")
    return float(value)
