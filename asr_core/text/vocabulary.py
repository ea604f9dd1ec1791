"""The vocabulary protocol every model's output alphabet implements, and its loader.

Two vocabularies exist: :class:`~asr_core.text.CharVocab` (28 characters, the CTC blank last, as
DLE and NeMo lay it out) and :class:`~asr_core.models.rnnt.vocab.SubwordVocab` (a sentencepiece
model, the blank as piece 0). Heads and decoders read the blank from the vocabulary, never from
a model family: a Conformer-CTC on sentencepiece pieces has its blank at 0, a QuartzNet on
characters at 28.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Vocabulary(Protocol):
    """``encode(text) -> ids``, ``decode(ids) -> text`` (blanks dropped), ``num_outputs`` with the blank."""

    @property
    def blank(self) -> int: ...

    @property
    def num_outputs(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


VOCABULARIES = ("char", "sentencepiece")


def vocab_from_dict(d: Mapping[str, Any]) -> Vocabulary:
    """The vocabulary a model file's ``vocab`` dict describes (its ``type`` key names the kind)."""
    kind = d.get("type", "char")
    if kind == "char":
        from asr_core.text.vocab import CharVocab

        return CharVocab.from_dict(dict(d))
    if kind == "sentencepiece":
        from asr_core.models.rnnt.vocab import SubwordVocab

        return SubwordVocab.from_dict(dict(d))
    raise ValueError(f"unknown vocabulary type {kind!r}; known: {list(VOCABULARIES)}")


def load_vocab(kind: str, path: str | None) -> Vocabulary:
    """A vocabulary from the tokenizer stage's files: ``char`` (``chars.json``, or the built-in
    28 symbols when ``path`` is None) or ``sentencepiece`` (``spm.model``)."""
    if kind == "char":
        from asr_core.text.vocab import CharVocab

        return CharVocab.load(path) if path else CharVocab()
    if kind == "sentencepiece":
        from asr_core.models.rnnt.vocab import SubwordVocab

        if not path:
            raise ValueError(
                "a sentencepiece vocabulary needs the tokenizer stage's model file (data.vocab: data/tokenizer/spm.model)"
            )
        return SubwordVocab.load(path)
    raise ValueError(f"unknown vocabulary type {kind!r}; known: {list(VOCABULARIES)}")


def vocab_from_file(path: str | None, where: str = "data.vocab") -> Vocabulary:
    """The tokenizer stage's vocabulary file: ``*.json`` characters (``chars.json``), ``*.model``
    sentencepiece (``spm.model``); None: the built-in 28 characters."""
    if path is None:
        return load_vocab("char", None)
    suffix = str(path).rsplit(".", 1)[-1] if "." in str(path) else ""
    kind = {"json": "char", "model": "sentencepiece"}.get(suffix)
    if kind is None:
        raise ValueError(f"{where}: {path}: a vocabulary is chars.json (characters) or spm.model (sentencepiece)")
    return load_vocab(kind, path)
