"""MD5 checksums for downloaded corpora: computed in chunks, and a mismatch is fatal.

The md5 is what the corpus publishers list (openslr, for LibriSpeech); it guards
against truncated and corrupted transfers, not against tampering.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CHUNK = 1 << 20


class ChecksumError(ValueError):
    """A file's md5 differs from the expected one; the file was not used."""

    def __init__(self, path: str | os.PathLike, expected: str, actual: str, deleted: bool):
        self.path = Path(path)
        self.expected = expected
        self.actual = actual
        self.deleted = deleted
        fate = "the file was deleted" if deleted else "the file was left in place, unused"
        super().__init__(f"md5 mismatch for {self.path}: expected {expected}, got {actual}; {fate}")


def md5_file(path: str | os.PathLike, chunk_size: int = CHUNK) -> str:
    """The hex md5 of a file, read ``chunk_size`` bytes at a time (constant memory)."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def normalize_md5(md5: str) -> str:
    """Lower-case, stripped; anything but 32 hex digits is a ValueError naming the value."""
    value = md5.strip().lower()
    if len(value) != 32 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"not an md5 (32 hex digits): {md5!r}")
    return value


def verify_md5(path: str | os.PathLike, expected: str, delete: bool = True) -> None:
    """Raise :class:`ChecksumError` if ``path``'s md5 is not ``expected``.

    With ``delete`` (the default) the bad file is removed before raising, so that no
    later step can pick it up by mistake.
    """
    expected = normalize_md5(expected)
    actual = md5_file(path)
    if actual != expected:
        if delete:
            Path(path).unlink(missing_ok=True)
        raise ChecksumError(path, expected, actual, deleted=delete)
