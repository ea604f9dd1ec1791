"""Training checkpoints (``ckpt-<step>.pt``) and the inference artifact (``model.pt``).

Training checkpoints hold everything a run needs to continue exactly (see
``engine.py`` for the keys). They are written atomically - ``torch.save`` to a
temporary file in the same folder, fsync, ``os.replace`` - so a run killed while
saving leaves the previous checkpoint intact and never a half-written one under
the real name; only the last ``keep`` are kept.

Everything is loaded with ``torch.load(weights_only=True)``: no pickled code runs
when a checkpoint is opened. So a checkpoint may hold only tensors, dicts, lists,
tuples, numbers, strings, bools and None: RNG states are stored as tensors
(:func:`rng_state` / :func:`set_rng_state`) and configs as plain dicts.

``model.pt`` is what evaluation and transcription need and nothing else::

    {"format": "asr-toolkit/ctc-model", "version": 1,
     "family": "quartznet", "model_config": {...}, "num_outputs": 29,
     "features": FilterbankConfig dict, "vocab": CharVocab dict,
     "model": state_dict (the EMA weights when EMA is on), "step": int, "metrics": {...}}
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
from torch import nn

from asr_core.io.atomic import atomic_path

CKPT_RE = re.compile(r"^ckpt-(\d{8,})\.pt$")
MODEL_FORMAT = "asr-toolkit/ctc-model"
MODEL_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint or model file that cannot be read or does not hold what it should."""


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


def _save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def save_checkpoint(ckpt_dir: str | os.PathLike, step: int, state: Mapping[str, Any], keep: int = 3) -> Path:
    """Write ``state`` as ``ckpt_dir/ckpt-<step:08d>.pt`` atomically; keep the last ``keep`` (0: all)."""
    if keep < 0:
        raise ValueError(f"keep must be >= 0, got {keep}")
    path = Path(ckpt_dir) / checkpoint_name(step)
    _save(dict(state), path)
    if keep:
        for _, old in list_checkpoints(ckpt_dir)[:-keep]:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    A truncated, corrupt or non-checkpoint file raises :class:`CheckpointError` naming it.
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
        "python": list(random.getstate()[1]), "python_gauss": random.getstate()[2],
        "numpy": torch.from_numpy(mt.astype(np.int64)), "numpy_pos": int(pos),
        "numpy_gauss": [int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(s: dict[str, Any]) -> None:
    random.setstate((3, tuple(s["python"]), s["python_gauss"]))
    np.random.set_state(("MT19937", s["numpy"].numpy().astype(np.uint32), s["numpy_pos"],
                         s["numpy_gauss"][0], s["numpy_gauss"][1]))
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


# ---------------------------------------------------------------------------------------------
# The inference artifact


def save_model(
    path: str | os.PathLike,
    *,
    family: str,
    model_config: Mapping[str, Any],
    num_outputs: int,
    features: Mapping[str, Any],
    vocab: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    step: int,
    metrics: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model.pt`` atomically (see the module docstring for the layout)."""
    obj = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "family": family,
        "model_config": dict(model_config),
        "num_outputs": int(num_outputs),
        "features": dict(features),
        "vocab": dict(vocab),
        "model": {k: v.detach().cpu().clone() for k, v in state_dict.items()},
        "step": int(step),
        "metrics": {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float, str, bool))},
    }
    path = Path(path)
    _save(obj, path)
    return path


def read_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """The raw ``model.pt`` dict, checked for its format and keys."""
    obj = load_checkpoint(path)
    if obj.get("format") != MODEL_FORMAT:
        raise CheckpointError(f"{path}: not a model file (format {obj.get('format')!r}, "
                              f"expected {MODEL_FORMAT!r}); training checkpoints are ckpt-*.pt")
    missing = {"family", "model_config", "num_outputs", "features", "vocab", "model"} - set(obj)
    if missing:
        raise CheckpointError(f"{path}: model file lacks {sorted(missing)}")
    return obj


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """``model.pt`` -> ``(model, features, vocab)``, the model and features in eval mode on ``device``.

    ``features`` is a :class:`~asr_core.features.FilterbankFeatures` with the training config
    (no dither in eval mode); ``vocab`` a :class:`~asr_core.text.CharVocab`. A transducer
    (family ``rnnt``) gives :class:`~asr_core.models.rnnt.features.RNNTFilterbank` and
    :class:`~asr_core.models.rnnt.vocab.SubwordVocab` instead; wav2vec 2.0 (family ``wav2vec2``)
    a :class:`~asr_core.models.wav2vec2.WaveformFeatures` (``(wave, lens) -> (normalised wave, lens)``).
    """
    from asr_core.features import FilterbankConfig, build_features
    from asr_core.models import build_model_from_config
    from asr_core.text import CharVocab

    obj = read_model_file(path)
    model: nn.Module = build_model_from_config(obj["family"], obj["model_config"], obj["num_outputs"])
    try:
        model.load_state_dict(obj["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit a {obj['family']} model with its config: {e}") from e
    if obj["family"] == "wav2vec2":  # raw waveform in: its "features" only normalise the wave
        from asr_core.models.wav2vec2 import WaveformConfig

        fcfg = WaveformConfig.from_dict(obj["features"])
    else:
        fcfg = FilterbankConfig.from_dict(obj["features"])
    if obj["vocab"].get("type") == "sentencepiece":  # a transducer: subword pieces, streaming-exact features
        from asr_core.models.rnnt.features import RNNTFilterbank
        from asr_core.models.rnnt.vocab import SubwordVocab

        features, vocab = RNNTFilterbank(fcfg), SubwordVocab.from_dict(obj["vocab"])
    else:
        features, vocab = build_features(fcfg), CharVocab.from_dict(obj["vocab"])
    if vocab.num_outputs != obj["num_outputs"]:
        raise CheckpointError(f"{path}: vocabulary has {vocab.num_outputs} outputs, model {obj['num_outputs']}")
    return model.to(device).eval(), features.to(device).eval(), vocab
