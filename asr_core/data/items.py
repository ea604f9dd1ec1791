"""The source index: what the download stage hands to the prepare stage.

Every corpus source (synthetic, LibriSpeech, Common Voice, TED-LIUM, a user
manifest) is reduced to one JSON-lines file of :class:`SourceItem` rows. The
prepare stage reads only this index, so it knows nothing about corpus layouts.

``audio`` is an absolute path, or a path relative to the index file's folder.
``offset``/``duration`` (seconds) select a segment of a longer recording
(TED-LIUM STM segments); ``duration`` None means "to the end of the file".
``text`` is the transcript as the source has it (normalised later, in prepare).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterable, Iterator

from asr_core.io.jsonl import read_jsonl, write_jsonl

INDEX_NAME = "index.jsonl"


@dataclass(frozen=True)
class SourceItem:
    utt_id: str
    split: str
    audio: str
    text: str
    speaker: str = ""
    offset: float = 0.0
    duration: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "") -> "SourceItem":
        names = {f.name for f in fields(cls)}
        missing = [n for n in ("utt_id", "split", "audio", "text") if n not in d]
        if missing:
            raise ValueError(f"{where}: source item is missing field(s) {missing}: {d!r}")
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"{where}: source item has unknown field(s) {unknown}: {d!r}")
        return cls(**d)

    def resolve_audio(self, base: str | os.PathLike) -> Path:
        p = Path(self.audio)
        return p if p.is_absolute() else Path(base) / p


def write_index(path: str | os.PathLike, items: Iterable[SourceItem]) -> int:
    return write_jsonl(path, (it.to_dict() for it in items))


def read_index(path: str | os.PathLike) -> Iterator[SourceItem]:
    for i, row in enumerate(read_jsonl(path), 1):
        yield SourceItem.from_dict(row, where=f"{path}:{i}")
