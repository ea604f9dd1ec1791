"""State-dict key mapping between NeMo and this project's (= DLE QuartzNet's) names.

Pure dict functions: tensors are passed through untouched (same objects), key
order is kept. The .nemo archive (a tar with model_config.yaml and
model_weights.ckpt) is read and written elsewhere.

    NeMo                                    ours / DLE
    encoder.encoder.<i>.mconv.<j>.conv.weight   encoder.layers.<i>.mconv.<j>.weight
    encoder.encoder.<i>.res.<k>.0.conv.weight   encoder.layers.<i>.res.<k>.0.weight
    encoder.encoder.<i>.mconv.<j>.weight (BN)   encoder.layers.<i>.mconv.<j>.weight
    decoder.decoder_layers.0.weight             decoder.layers.0.weight
    preprocessor.featurizer.{fb,window}         (dropped: features are computed outside the model)

NeMo's MaskedConv1d wraps an ``nn.Conv1d`` as ``.conv``; DLE's (and ours)
subclasses it. Going back, a parameter is a convolution's when its tensor is 3-D
(BatchNorm tensors are 1-D), so the ``.conv`` infix can be restored from the dict
alone. NeMo's MaskedConv1d holds no buffers, so nothing else differs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeVar

_V = TypeVar("_V")

_NEMO_CONV = re.compile(r"^(encoder\.layers\..*)\.conv\.(weight|bias)$")
_DLE_JASPER_CONV = re.compile(r"^(encoder\.layers\.\d+)\.conv\.(\d+\..*)$")
_OUR_MCONV = re.compile(r"^(encoder\.layers\.\d+)\.mconv\.(\d+\..*)$")


def _rename_prefix(key: str, old: str, new: str) -> str:
    return new + key[len(old) :] if key.startswith(old) else key


def nemo_to_dle_keys(state_dict: Mapping[str, _V]) -> dict[str, _V]:
    """Map a NeMo ConvASR (QuartzNet/Jasper) CTC state dict onto our names."""
    out: dict[str, _V] = {}
    for key, value in state_dict.items():
        if key.startswith("preprocessor."):
            continue
        new = _rename_prefix(key, "encoder.encoder.", "encoder.layers.")
        new = _rename_prefix(new, "decoder.decoder_layers.", "decoder.layers.")
        new = _NEMO_CONV.sub(r"\1.\2", new)
        if new in out:
            raise ValueError(f"two NeMo keys map to {new!r} (second: {key!r})")
        out[new] = value
    return out


def dle_to_nemo_keys(state_dict: Mapping[str, _V]) -> dict[str, _V]:
    """Inverse of ``nemo_to_dle_keys`` (without the preprocessor tensors NeMo also stores).

    Values need ``.ndim`` (tensors or arrays): an encoder weight with 3 dims is a
    convolution's, and so is the bias next to it.
    """
    conv_modules = {
        key[: -len(".weight")]
        for key, value in state_dict.items()
        if key.startswith("encoder.layers.") and key.endswith(".weight") and value.ndim == 3
    }
    out: dict[str, _V] = {}
    for key, value in state_dict.items():
        module, _, leaf = key.rpartition(".")
        if module in conv_modules and leaf in ("weight", "bias"):
            key = f"{module}.conv.{leaf}"
        key = _rename_prefix(key, "encoder.layers.", "encoder.encoder.")
        key = _rename_prefix(key, "decoder.layers.", "decoder.decoder_layers.")
        out[key] = value
    return out


def dle_jasper_to_model_keys(state_dict: Mapping[str, _V]) -> dict[str, _V]:
    """DLE Jasper checkpoints name a block's sub-block list ``conv``; ours (and NeMo's) ``mconv``."""
    return {_DLE_JASPER_CONV.sub(r"\1.mconv.\2", k): v for k, v in state_dict.items()}


def model_to_dle_jasper_keys(state_dict: Mapping[str, _V]) -> dict[str, _V]:
    """Inverse of ``dle_jasper_to_model_keys``."""
    return {_OUR_MCONV.sub(r"\1.conv.\2", k): v for k, v in state_dict.items()}
