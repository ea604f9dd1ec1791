"""Small file helpers shared by every stage: atomic writes, JSON-lines, file digests."""

from asr_core.io.atomic import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text
from asr_core.io.digest import file_sha256
from asr_core.io.jsonl import read_jsonl, write_jsonl

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "file_sha256",
    "read_jsonl",
    "write_jsonl",
]
