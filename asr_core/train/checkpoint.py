"""Training checkpoints (``ckpt-<step>.pt``) and the RNG states they carry.

Training checkpoints hold everything a run needs to continue exactly (see
``engine.py`` for the keys). They are written atomically - ``torch.save`` to a
temporary file in the same folder, fsync, ``os.replace`` - so a run killed while
saving leaves the previous checkpoint intact and never a half-written one under
the real name; only the last ``keep`` are kept.

Everything is loaded with ``torch.load(weights_only=True)``: no pickled code runs
when a checkpoint is opened. So a checkpoint may hold only tensors, dicts, lists,
tuples, numbers, strings, bools and None: RNG states are stored as tensors
(:func:`rng_state` / :func:`set_rng_state`) and configs as plain dicts.

The inference artifact ``model.pt`` is :mod:`asr_core.models.artifact`'s.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asr_core.io.torch_files import CheckpointError, load_torch_file, save_torch_file

CKPT_RE = re.compile(r"^ckpt-(\d{8,})\.pt$")
__all__ = [
    "CheckpointError",
    "checkpoint_name",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "rng_state",
    "save_checkpoint",
    "seed_everything",
    "set_rng_state",
]


def checkpoint_name(step: int) -> str:
    return f"ckpt-{int(step):08d}.pt"


def list_checkpoints(ckpt_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, path) of the checkpoints in ``ckpt_dir``, oldest first; temporary files ignored."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        m = CKPT_RE.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(ckpt_dir: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest step in ``ckpt_dir``, or None."""
    found = list_checkpoints(ckpt_dir)
    return found[-1][1] if found else None


def save_checkpoint(ckpt_dir: str | os.PathLike, step: int, state: Mapping[str, Any], keep: int = 3) -> Path:
    """Write ``state`` as ``ckpt_dir/ckpt-<step:08d>.pt`` atomically; keep the last ``keep`` (0: all)."""
    if keep < 0:
        raise ValueError(f"keep must be >= 0, got {keep}")
    path = Path(ckpt_dir) / checkpoint_name(step)
    save_torch_file(dict(state), path)
    if keep:
        for _, old in list_checkpoints(ckpt_dir)[:-keep]:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    A truncated, corrupt or non-checkpoint file raises :class:`CheckpointError` naming it.
    """
    return load_torch_file(path, map_location)


# ---------------------------------------------------------------------------------------------
# RNG state: as tensors and plain values, so that weights_only loading accepts it


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds every CUDA device too


def rng_state() -> dict[str, Any]:
    """This process's RNG states as tensors and plain values (``weights_only`` loadable)."""
    _, mt, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": list(random.getstate()[1]),
        "python_gauss": random.getstate()[2],
        "numpy": torch.from_numpy(mt.astype(np.int64)),
        "numpy_pos": int(pos),
        "numpy_gauss": [int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(s: dict[str, Any]) -> None:
    random.setstate((3, tuple(s["python"]), s["python_gauss"]))
    np.random.set_state(
        ("MT19937", s["numpy"].numpy().astype(np.uint32), s["numpy_pos"], s["numpy_gauss"][0], s["numpy_gauss"][1])
    )
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
