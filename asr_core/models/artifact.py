"""The inference artifact ``model.pt``: everything evaluation, export and serving need, nothing else.

Layout (version 2)::

    {"format": "asr-toolkit/model", "version": 2,
     "kind": "ctc" | "transducer",           # the objective: how the model is trained and decoded
     "family": "quartznet", "model_config": {...},   # the encoder family and its config
     "head_config": {...} | None,            # the transducer head's shapes (absent or None: CTC,
                                             # or the ones the family's config names)
     "frontend": "filterbank" | "streaming_filterbank" | "waveform", "features": {...},
     "vocab": {"type": "char" | "sentencepiece", ...}, "num_outputs": 29,
     "model": state_dict (the EMA weights when EMA is on), "step": int, "metrics": {...}}

Version 1 files (format ``asr-toolkit/ctc-model``, written for every family whatever its head)
load unchanged: their kind and front end follow from the family they name. Anything else is
refused with a message naming the file and what it holds instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from asr_core.io.torch_files import CheckpointError, load_torch_file, save_torch_file

MODEL_FORMAT = "asr-toolkit/model"
MODEL_VERSION = 2
V1_FORMAT = "asr-toolkit/ctc-model"
KINDS = ("ctc", "transducer")
REQUIRED = ("kind", "family", "frontend", "model_config", "num_outputs", "features", "vocab", "model")


def save_model(
    path: str | os.PathLike,
    *,
    kind: str,
    family: str,
    frontend: str,
    model_config: Mapping[str, Any],
    num_outputs: int,
    features: Mapping[str, Any],
    vocab: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    step: int,
    metrics: Mapping[str, Any] | None = None,
    head_config: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model.pt`` atomically (see the module docstring for the layout)."""
    if kind not in KINDS:
        raise ValueError(f"model kind must be one of {list(KINDS)}, got {kind!r}")
    obj = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "kind": kind,
        "family": family,
        "frontend": frontend,
        "model_config": dict(model_config),
        "head_config": dict(head_config) if head_config is not None else None,
        "num_outputs": int(num_outputs),
        "features": dict(features),
        "vocab": dict(vocab),
        "model": {k: v.detach().cpu().clone() for k, v in state_dict.items()},
        "step": int(step),
        "metrics": {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float, str, bool))},
    }
    return save_torch_file(obj, path)


def _upgrade_v1(obj: dict[str, Any]) -> dict[str, Any]:
    """A version 1 dict in the version 2 layout: kind and front end from its family."""
    family = obj.get("family")
    kind = "transducer" if family == "rnnt" else "ctc"
    frontend = {"rnnt": "streaming_filterbank", "wav2vec2": "waveform"}.get(family, "filterbank")
    return {**obj, "format": MODEL_FORMAT, "version": MODEL_VERSION, "kind": kind, "frontend": frontend}


def read_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """The raw ``model.pt`` dict in the version 2 layout, checked for its format and keys."""
    obj = load_torch_file(path)
    fmt, version = obj.get("format"), obj.get("version")
    if fmt == V1_FORMAT and version == 1:
        obj = _upgrade_v1(obj)
    elif fmt != MODEL_FORMAT:
        hint = (
            "a wav2vec 2.0 pre-training model: fine-tune it (train.model.init_from) to get a model that transcribes"
            if fmt == "asr-toolkit/wav2vec2-pretraining"
            else "training checkpoints are ckpt-*.pt; the model file is model.pt"
        )
        raise CheckpointError(f"{path}: not a model file (format {fmt!r}, expected {MODEL_FORMAT!r}): {hint}")
    elif version != MODEL_VERSION:
        raise CheckpointError(
            f"{path}: model file version {version!r}; this toolkit reads versions 1 and {MODEL_VERSION}"
        )
    missing = [k for k in REQUIRED if k not in obj]
    if missing:
        raise CheckpointError(f"{path}: model file lacks {missing}")
    if obj["kind"] not in KINDS:
        raise CheckpointError(f"{path}: unknown model kind {obj['kind']!r}; known: {list(KINDS)}")
    return obj


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """``model.pt`` -> ``(model, features, vocab)``: the model and its front end in eval mode on ``device``.

    ``model.kind`` says which objective decodes it (``"ctc"`` or ``"transducer"``); ``features`` is
    the front-end module of :mod:`asr_core.features.frontends`; ``vocab`` a
    :class:`~asr_core.text.vocabulary.Vocabulary`.
    """
    from asr_core.features.frontends import build_frontend
    from asr_core.models import build_model_from_config
    from asr_core.text.vocabulary import vocab_from_dict

    obj = read_model_file(path)
    try:
        model: nn.Module = build_model_from_config(
            obj["family"],
            obj["model_config"],
            obj["num_outputs"],
            kind=obj["kind"],
            head_config=obj.get("head_config"),
        )
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: its model config no longer builds ({e})") from e
    try:
        model.load_state_dict(obj["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit a {obj['family']} {obj['kind']} model with its config: {e}") from e
    features = build_frontend(obj["frontend"], obj["features"])
    vocab = vocab_from_dict(obj["vocab"])
    if vocab.num_outputs != obj["num_outputs"]:
        raise CheckpointError(f"{path}: vocabulary has {vocab.num_outputs} outputs, model {obj['num_outputs']}")
    return model.to(device).eval(), features.to(device).eval(), vocab
