"""Safe, atomic ``torch`` files: what checkpoints and model files are written and read with.

Writing goes through a temporary file in the same folder, fsync, then ``os.replace``: a run
killed while saving leaves the previous file intact, never a half-written one under the real
name. Reading uses ``torch.load(weights_only=True)``: no pickled code runs when a file is
opened, so a file may hold only tensors, dicts, lists, tuples, numbers, strings, bools and None.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from asr_core.io.atomic import atomic_path


class CheckpointError(RuntimeError):
    """A checkpoint or model file that cannot be read or does not hold what it should."""


def save_torch_file(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    return path


def load_torch_file(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A dict saved by :func:`save_torch_file`, loaded with ``weights_only=True``.

    A missing file raises ``FileNotFoundError``; a truncated, corrupt or non-dict file raises
    :class:`CheckpointError` naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # zip errors, unpickling errors, EOF: all mean this file is unusable
        raise CheckpointError(
            f"{path}: corrupt or unreadable checkpoint ({type(e).__name__}: {e}); "
            f"delete it to resume from the previous one"
        ) from e
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict, got {type(state).__name__}")
    return state
