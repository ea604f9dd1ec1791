"""Subword vocabulary for the transducer: the tokenizer stage's sentencepiece model, blank = 0.

The model's bytes travel inside ``model.pt`` (as a uint8 tensor, which ``weights_only``
loading accepts), so a model file decodes on its own.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch


class SubwordVocab:
    """``encode(text) -> ids``, ``decode(ids) -> text``; ``num_outputs`` pieces, id 0 the blank."""

    blank = 0

    def __init__(self, model_proto: bytes, source: str = "<bytes>") -> None:
        import sentencepiece as spm

        self.proto, self.source = bytes(model_proto), source
        try:
            self.sp = spm.SentencePieceProcessor(model_proto=self.proto)
        except Exception as e:  # sentencepiece raises RuntimeError / OSError on bad bytes
            raise ValueError(f"{source}: not a sentencepiece model ({type(e).__name__}: {e})") from e
        if self.sp.pad_id() != 0:
            raise ValueError(f"{source}: the transducer needs the blank as piece 0 (the tokenizer stage's "
                             f"pad piece), this model has pad id {self.sp.pad_id()}")

    @classmethod
    def load(cls, path: str | os.PathLike) -> SubwordVocab:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"sentencepiece model not found: {path} (run the tokenizer stage first)")
        return cls(path.read_bytes(), str(path))

    @property
    def num_outputs(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return list(self.sp.encode(text))

    def decode(self, ids) -> str:
        return self.sp.decode([int(i) for i in ids if int(i) != self.blank])

    def piece(self, i: int) -> str:
        return self.sp.id_to_piece(int(i))

    def to_dict(self) -> dict:
        return {"type": "sentencepiece", "model": torch.frombuffer(bytearray(self.proto), dtype=torch.uint8),
                "blank": self.blank}

    @classmethod
    def from_dict(cls, d: dict) -> SubwordVocab:
        if d.get("type") != "sentencepiece":
            raise ValueError(f"not a sentencepiece vocabulary: type {d.get('type')!r}")
        return cls(d["model"].numpy().tobytes(), "model file")
