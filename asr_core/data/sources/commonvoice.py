"""Common Voice from a local release: a language folder, a release root, or the release tarball.

``path`` may be

- the language folder (``cv-corpus-*/<lang>/``, holding ``clips/`` and the TSVs),
- a folder with exactly one language folder up to two levels below it (the release
  root ``cv-corpus-*/``, or the folder holding it), or
- the release tarball, extracted safely into ``out_dir/extracted`` and read there.

``splits`` maps our split name to a TSV in the language folder (``{"train":
"validated.tsv"}`` uses everything validated for training). Columns are found by
header name; ``client_id``, ``path`` and ``sentence`` are required, the rest
(``sentence_id``, ``up_votes``, ``locale``...) ignored. TSVs are read with quoting
off: Common Voice sentences contain bare ``"``. A row with a missing or empty
required value raises naming the file and line.

Items: ``utt_id`` = clip stem, ``speaker`` = ``client_id``, ``audio`` =
``clips/<path>`` (absolute when read in place, relative to ``out_dir`` when
extracted), ``text`` = ``sentence`` as written. Old releases list clips without
the ``.mp3`` suffix; it is added when ``path`` has no suffix.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from tqdm import tqdm

from asr_core.data.items import SourceItem
from asr_core.data.sources.local import (
    audio_ref,
    check_path,
    check_splits,
    config_from_dict,
    local_or_extracted,
)

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("client_id", "path", "sentence")


@dataclass(frozen=True)
class CommonVoiceConfig:
    path: str  # language folder, release root, or release tarball
    splits: dict[str, str] = field(default_factory=lambda: {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", check_path(self.path, "CommonVoiceConfig"))
        object.__setattr__(self, "splits", check_splits(self.splits, "CommonVoiceConfig"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CommonVoiceConfig":
        return config_from_dict(cls, d)


def fetch_commonvoice(cfg: CommonVoiceConfig, out_dir: Path, progress: bool = True) -> list[SourceItem]:
    """Read every configured split TSV of the release; nothing is downloaded."""
    out_dir = Path(out_dir)
    root, extracted = local_or_extracted(cfg.path, out_dir, "CommonVoiceConfig")
    lang_dir = find_language_dir(root, cfg.path)
    clips = lang_dir / "clips"
    tsvs = {split: lang_dir / name for split, name in cfg.splits.items()}
    for split, tsv in tsvs.items():  # check all before reading any
        if not tsv.is_file():
            raise FileNotFoundError(
                f"{tsv}: Common Voice split file not found (CommonVoiceConfig.splits[{split!r}] = "
                f"{cfg.splits[split]!r}, in {lang_dir})"
            )
    items: list[SourceItem] = []
    for split, tsv in tsvs.items():
        n0 = len(items)
        for row in tqdm(read_cv_tsv(tsv), desc=f"commonvoice {split}", unit=" rows", disable=not progress):
            clip = row["path"]
            if not Path(clip).suffix:
                clip += ".mp3"
            items.append(
                SourceItem(
                    utt_id=Path(clip).stem,
                    split=split,
                    audio=audio_ref(clips / clip, out_dir, extracted),
                    text=row["sentence"],
                    speaker=row["client_id"],
                )
            )
        log.info("commonvoice %s: %d items from %s", split, len(items) - n0, tsv)
    return items


def find_language_dir(root: Path, given: str) -> Path:
    """The one folder at ``root`` or up to two levels below that holds ``clips/`` and ``*.tsv``."""
    if _is_language_dir(root):
        return root
    found = [d for d in sorted(root.glob("*/")) if _is_language_dir(d)]
    if not found:
        found = [d for d in sorted(root.glob("*/*/")) if _is_language_dir(d)]
    if not found:
        raise FileNotFoundError(
            f"{root}: no Common Voice language folder (one holding clips/ and *.tsv) there or up to two "
            f"levels below (CommonVoiceConfig.path = {given!r})"
        )
    if len(found) > 1:
        raise ValueError(
            f"{root}: {len(found)} Common Voice language folders found ({', '.join(str(d) for d in found)}); "
            f"set CommonVoiceConfig.path to one of them"
        )
    return found[0]


def read_cv_tsv(path: Path) -> Iterator[dict[str, str]]:
    """Yield one ``{column: value}`` dict per data row; bad rows raise naming ``file:line``."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file, expected a header line with {list(REQUIRED_COLUMNS)}")
        header = [h.strip() for h in header]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise ValueError(f"{path}:1: header lacks column(s) {missing}; it has {header}")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) > len(header):
                raise ValueError(f"{where}: {len(row)} fields but the header has {len(header)} (a stray tab?)")
            values = dict(zip(header, row))
            for col in REQUIRED_COLUMNS:
                if not values.get(col, "").strip():
                    raise ValueError(f"{where}: missing value for column {col!r}")
            yield values


def _is_language_dir(d: Path) -> bool:
    return (d / "clips").is_dir() and any(d.glob("*.tsv"))
