"""Small file helpers shared by every stage: atomic writes and JSON-lines."""

from asr_core.io.atomic import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text
from asr_core.io.jsonl import read_jsonl, write_jsonl

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "read_jsonl",
    "write_jsonl",
]
