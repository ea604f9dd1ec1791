"""Character vocabulary for CTC models: 28 symbols with the blank LAST (DLE layout).

Index 0 is space, 1-26 are a-z, 27 is the apostrophe and 28 is the CTC blank, so
a model has 29 outputs (REFERENCE.md, "Vocabulary").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from asr_core.io.atomic import atomic_write_json
from asr_core.text.normalize import ALPHABET


@dataclass(frozen=True)
class CharVocab:
    symbols: tuple[str, ...] = tuple(ALPHABET)
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError(f"duplicate symbols in vocabulary: {self.symbols!r}")
        object.__setattr__(self, "_index", {s: i for i, s in enumerate(self.symbols)})

    @property
    def blank(self) -> int:
        """CTC blank id: the last output."""
        return len(self.symbols)

    @property
    def num_outputs(self) -> int:
        return len(self.symbols) + 1

    def encode(self, text: str) -> list[int]:
        try:
            return [self._index[c] for c in text]
        except KeyError as e:
            raise ValueError(f"character {e.args[0]!r} of {text!r} is not in the vocabulary") from None

    def decode(self, ids: list[int]) -> str:
        return "".join(self.symbols[i] for i in ids if i != self.blank)

    def to_dict(self) -> dict:
        return {"type": "char", "symbols": list(self.symbols), "blank": self.blank}

    @classmethod
    def from_dict(cls, d: dict) -> CharVocab:
        vocab = cls(tuple(d["symbols"]))
        if d.get("blank", vocab.blank) != vocab.blank:
            raise ValueError(f"blank must be the last index ({vocab.blank}), got {d['blank']}")
        return vocab

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> CharVocab:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
