"""QuartzNet ``.nemo`` archives <-> this toolkit's inference artifact ``model.pt``.

A ``.nemo`` file is a tar (plain or gzip) holding ``model_config.yaml`` (the config of NeMo's
``EncDecCTCModel``) and ``model_weights.ckpt`` (``torch.save`` of its state dict), sometimes
with other files (tokenizers, ...) that a character QuartzNet does not use. What maps where::

    NeMo model_config.yaml                            ours (model.pt)
    encoder.jasper: [{filters, repeat, kernel, ...}]  model_config: QuartzNetConfig, block by block
    encoder.feat_in = preprocessor.features           in_features = features.n_mels
    preprocessor.{window_size, n_fft, dither, ...}    features: FilterbankConfig (features_from_nemo)
    decoder.vocabulary, blank appended last           vocab: CharVocab, blank last; num_outputs
    model_weights.ckpt                                model: state dict renamed by nemo_keys
    preprocessor.featurizer.{fb, window}              checked against features, then dropped

NeMo writes each of the S repeats of a QuartzNet block as its own entry; the (channels, kernel)
groups are read back from runs of equal entries (the largest S that fits). The config found is
rebuilt and compared entry by entry with NeMo's list, so anything this toolkit cannot build is
refused with the field and its value. Training-only settings (data sets, optimiser, SpecAugment)
are ignored. Unknown keys in a block raise (they may change the weights); unknown keys of the
encoder or preprocessor are returned as notes for the user to check.

Known difference the config cannot show: NeMo counts ``floor(samples / hop) + 1`` valid feature
frames, this toolkit (as DLE) ``ceil(samples / hop)``, i.e. one frame fewer when the length is a
multiple of the hop. The networks compute the same function; only that last frame differs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import io
import math
import os
import re
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from asr_core.data.download.archive import safe_extract_tar
from asr_core.features.filterbank import FilterbankConfig, make_window, mel_filterbank
from asr_core.io.atomic import atomic_path
from asr_core.io.torch_files import CheckpointError
from asr_core.models import artifact, build_model_from_config
from asr_core.models.artifact import MODEL_FORMAT, MODEL_VERSION
from asr_core.models.conv import BlockSpec
from asr_core.models.nemo_keys import dle_to_nemo_keys, nemo_to_dle_keys
from asr_core.models.quartznet import QuartzNetConfig
from asr_core.text.vocab import CharVocab

CONFIG_NAME = "model_config.yaml"
WEIGHTS_NAME = "model_weights.ckpt"
NEMO_MODEL = "nemo.collections.asr.models.ctc_models.EncDecCTCModel"
NEMO_PREPROCESSOR = "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor"
NEMO_ENCODER = "nemo.collections.asr.modules.ConvASREncoder"
NEMO_DECODER = "nemo.collections.asr.modules.ConvASRDecoder"
NEMO_NORM_EPS = 1e-5  # NeMo adds this constant to the std; it is not configurable there
FB_KEY, WINDOW_KEY = "preprocessor.featurizer.fb", "preprocessor.featurizer.window"

# Settings that must hold the value given (NeMo's default); anything else changes the function.
_PRE_FIXED = {"frame_splicing": 1, "exact_pad": False, "stft_exact_pad": False, "stft_conv": False,
              "mag_power": 2.0, "log_zero_guard_type": "add", "pad_value": 0, "use_torchaudio": False}
_PRE_MAPPED = {"_target_", "sample_rate", "window_size", "n_window_size", "window_stride", "n_window_stride",
               "window", "normalize", "n_fft", "preemph", "features", "lowfreq", "highfreq", "log",
               "log_zero_guard_value", "dither", "pad_to", "mel_norm"}
_PRE_TRAINING_ONLY = {"nb_augmentation_prob", "nb_max_freq", "rng", "max_duration", "use_grads"}
_ENC_FIXED = {"activation": "relu", "normalization_mode": "batch", "residual_mode": "add", "conv_mask": True,
              "frame_splicing": 1, "quantize": False}
_ENC_KNOWN = {"_target_", "feat_in", "jasper", "init_mode", "norm_groups"}
_BLOCK_REQUIRED = ("filters", "repeat", "kernel", "stride", "dilation", "dropout", "residual")
_BLOCK_FIXED = {"groups": 1, "heads": -1, "se": False, "kernel_size_factor": 1.0, "stride_last": False,
                "residual_dense": False, "residual_mode": "add", "future_context": -1}
_BLOCK_KNOWN = {*_BLOCK_REQUIRED, *_BLOCK_FIXED, "separable", "se_reduction_ratio", "se_context_size",
                "se_interpolation_mode", "norm_groups"}
_NEMO_FIELD = {"channels": "filters", "sub_blocks": "repeat"}  # BlockSpec field -> NeMo block key
_INTERPOLATION = re.compile(r"^\$\{([A-Za-z_][\w.]*)\}$")


class NemoFormatError(ValueError):
    """A ``.nemo`` archive (or a model to export) that cannot be converted exactly."""


@dataclasses.dataclass(frozen=True)
class Converted:
    """What ``import_nemo`` / ``export_nemo`` wrote, and what the user should know about it."""

    path: Path
    model_config: dict[str, Any]
    num_params: int
    notes: tuple[str, ...]


# ---------------------------------------------------------------------------------------------
# .nemo -> model.pt


def import_nemo(src: str | os.PathLike, dst: str | os.PathLike, *, check_features: bool = True) -> Converted:
    """Convert the QuartzNet ``.nemo`` archive ``src`` into ``model.pt`` at ``dst`` (atomic write)."""
    config, state = read_nemo(src)
    try:
        artifact, notes = nemo_to_artifact(config, state, check_features=check_features)
    except NemoFormatError as e:
        raise NemoFormatError(f"{src}: {e}") from None
    _save_torch(artifact, Path(dst))
    return Converted(Path(dst), artifact["model_config"], _num_params(artifact["model"]), tuple(notes))


def read_nemo(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(model config, NeMo state dict)`` of a ``.nemo`` file, extracted with member checks.

    Raises ``UnsafeArchiveError`` (nothing extracted) for members that would land outside the
    temporary folder, :class:`NemoFormatError` for a missing or unreadable config or weights.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f".nemo file not found: {path}")
    with tempfile.TemporaryDirectory(prefix="nemo-") as tmp:
        root = Path(tmp) / "archive"
        safe_extract_tar(path, root)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (root / name).is_file():
                found = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
                raise NemoFormatError(f"{path}: no {name} at the top of the archive (it holds {found})")
        try:
            config = yaml.safe_load((root / CONFIG_NAME).read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise NemoFormatError(f"{path}: {CONFIG_NAME} is not valid YAML: {e}") from e
        try:  # weights_only: no pickled code from the archive runs
            state = torch.load(root / WEIGHTS_NAME, map_location="cpu", weights_only=True)
        except Exception as e:
            raise NemoFormatError(f"{path}: {WEIGHTS_NAME} does not load as a plain state dict "
                                  f"(torch.load weights_only=True): {type(e).__name__}: {e}") from e
    if isinstance(config, dict) and "encoder" not in config and isinstance(config.get("model"), dict):
        config = config["model"]  # a training YAML (``model:`` at the top) rather than a saved config
    if not isinstance(config, dict):
        raise NemoFormatError(f"{path}: {CONFIG_NAME} is not a mapping")
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]  # a Lightning checkpoint renamed
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise NemoFormatError(f"{path}: {WEIGHTS_NAME} is not a state dict of tensors")
    return config, dict(state)


def nemo_to_artifact(
    config: Mapping[str, Any], state: Mapping[str, torch.Tensor], *, check_features: bool = True
) -> tuple[dict[str, Any], list[str]]:
    """The ``model.pt`` dict for a NeMo QuartzNet config and state dict, and notes for the user.

    ``check_features``: the archive's mel filterbank and window must equal the ones the mapped
    FilterbankConfig computes (else the model would see other features than it was trained on);
    False turns a mismatch into a note.
    """
    notes: list[str] = []
    target = config.get("target")
    if target is not None and not str(target).endswith("EncDecCTCModel"):
        raise NemoFormatError(f"target={target!r}: only character CTC models (EncDecCTCModel) are supported")
    if config.get("tokenizer") is not None:
        raise NemoFormatError("tokenizer: the model uses subword units; only character models are supported")
    features = features_from_nemo(_section(config, "preprocessor"), notes)
    model_config = quartznet_config_from_nemo(_section(config, "encoder"), notes)
    if model_config.in_features != features.n_mels:
        raise NemoFormatError(
            f"encoder.feat_in={model_config.in_features} but preprocessor.features={features.n_mels}"
        )
    vocab, order = vocab_from_nemo(config, _section(config, "decoder"), notes)

    model = build_model_from_config("quartznet", model_config, vocab.num_outputs)
    try:
        weights = nemo_to_dle_keys(state)
    except ValueError as e:  # two NeMo keys for one of ours
        raise NemoFormatError(f"{WEIGHTS_NAME}: {e}") from e
    expected = model.state_dict()
    # Errors name keys as the archive does: NeMo's names of the expected and of the given keys.
    names = {**_nemo_names(expected), **nemo_to_dle_keys({k: k for k in state})}
    _check_state(expected, weights, names.__getitem__, WEIGHTS_NAME)
    if order is not None:
        for k in ("decoder.layers.0.weight", "decoder.layers.0.bias"):
            weights[k] = weights[k][order]
    model.load_state_dict(weights, strict=True)
    _check_featurizer(state, features, notes, strict=check_features)
    artifact = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "kind": "ctc",
        "family": "quartznet",
        "frontend": "filterbank",
        "model_config": model_config.to_dict(),
        "num_outputs": vocab.num_outputs,
        "features": features.to_dict(),
        "vocab": vocab.to_dict(),
        "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "step": 0,
        "metrics": {},
    }
    return artifact, notes


def quartznet_config_from_nemo(encoder: Mapping[str, Any], notes: list[str]) -> QuartzNetConfig:
    """``encoder`` (NeMo ConvASREncoder config) -> QuartzNetConfig, or NemoFormatError naming the field."""
    _check_target(encoder, "encoder", NEMO_ENCODER)
    _check_fixed(encoder, _ENC_FIXED, "encoder")
    unknown = sorted(set(encoder) - _ENC_KNOWN - set(_ENC_FIXED))
    if unknown:
        notes.append(f"encoder: ignored unknown keys {unknown}")
    if "feat_in" not in encoder:
        raise NemoFormatError("encoder.feat_in is missing")
    blocks = encoder.get("jasper")
    if not isinstance(blocks, list) or len(blocks) < 3:
        raise NemoFormatError(f"encoder.jasper must list at least 3 blocks (C1, C2, C3), got {blocks!r:.200}")
    specs = [_block_spec(b, f"encoder.jasper[{i}]") for i, b in enumerate(blocks)]
    for i, s in enumerate(specs[:-1]):
        if not s.separable:
            raise NemoFormatError(f"encoder.jasper[{i}].separable is false: plain convolutions make a Jasper, "
                                  f"not a QuartzNet (time-channel separable); only QuartzNet is supported")
    if specs[-1].separable:
        raise NemoFormatError(f"encoder.jasper[{len(specs) - 1}].separable is true: QuartzNet's last block (C3) "
                              f"is a plain convolution")
    for i, s in enumerate(specs):
        if s.dropout != specs[0].dropout:
            raise NemoFormatError(f"encoder.jasper[{i}].dropout={s.dropout} differs from encoder.jasper[0]."
                                  f"dropout={specs[0].dropout}: QuartzNetConfig has one dropout for all blocks")
    first, middle, epilogue, last = specs[0], specs[1:-2], specs[-2], specs[-1]
    runs: list[int] = []  # lengths of runs of equal (channels, kernel) among B1..Bn
    for i, s in enumerate(middle):
        if i and (s.channels, s.kernel) == (middle[i - 1].channels, middle[i - 1].kernel):
            runs[-1] += 1
        else:
            runs.append(1)
    repeats = math.gcd(*runs) if runs else 1
    groups = middle[::repeats]
    try:
        cfg = QuartzNetConfig(
            in_features=_int(encoder["feat_in"], "encoder.feat_in"),
            prologue_channels=first.channels, prologue_kernel=first.kernel, prologue_stride=first.stride,
            block_channels=tuple(s.channels for s in groups), block_kernels=tuple(s.kernel for s in groups),
            block_repeats=repeats, sub_blocks=middle[0].sub_blocks if middle else QuartzNetConfig.sub_blocks,
            epilogue_channels=epilogue.channels, epilogue_kernel=epilogue.kernel,
            epilogue_dilation=epilogue.dilation, output_channels=last.channels, dropout=first.dropout,
        )
    except ValueError as e:
        raise NemoFormatError(f"encoder: {e}") from e
    for i, (want, got) in enumerate(zip(cfg.block_specs(), specs, strict=True)):
        if want != got:
            diff = ", ".join(
                f"{_NEMO_FIELD.get(name, name)}={getattr(got, name)!r} (QuartzNet: {getattr(want, name)!r})"
                for name in (f.name for f in dataclasses.fields(BlockSpec))
                if getattr(got, name) != getattr(want, name)
            )
            role = {0: "C1", len(specs) - 2: "C2", len(specs) - 1: "C3"}.get(i, "B block")
            raise NemoFormatError(f"encoder.jasper[{i}] does not fit a QuartzNet {role}: {diff}")
    return cfg


def features_from_nemo(pre: Mapping[str, Any], notes: list[str]) -> FilterbankConfig:
    """``preprocessor`` (NeMo AudioToMelSpectrogramPreprocessor config) -> FilterbankConfig."""
    _check_target(pre, "preprocessor", NEMO_PREPROCESSOR)
    _check_fixed(pre, _PRE_FIXED, "preprocessor")
    unknown = sorted(set(pre) - _PRE_MAPPED - set(_PRE_FIXED) - _PRE_TRAINING_ONLY)
    if unknown:
        notes.append(f"preprocessor: ignored unknown keys {unknown}")
    sr = _int(pre.get("sample_rate", 16000), "preprocessor.sample_rate")
    window_size = _seconds(pre, "window_size", "n_window_size", sr, 0.02)
    window_stride = _seconds(pre, "window_stride", "n_window_stride", sr, 0.01)
    normalize = pre.get("normalize", "per_feature")
    if isinstance(normalize, Mapping):
        raise NemoFormatError(f"preprocessor.normalize={dict(normalize)!r}: fixed mean/std is not supported")
    if normalize not in ("per_feature", "all_features", "none", None):
        notes.append(f"preprocessor.normalize={normalize!r}: NeMo does not normalise for it; mapped to 'none'")
    window = pre.get("window", "hann")
    if window not in ("hann", "hamming", "blackman", "bartlett", "none", None):
        raise NemoFormatError(f"preprocessor.window={window!r} is not supported "
                              f"(hann, hamming, blackman, bartlett, none)")
    guard = pre.get("log_zero_guard_value", 2.0**-24)
    if isinstance(guard, str):
        if guard not in ("tiny", "eps"):
            raise NemoFormatError(f"preprocessor.log_zero_guard_value={guard!r}: expected a number, tiny or eps")
        guard = getattr(torch.finfo(torch.float32), guard)
    mel_norm = pre.get("mel_norm", "slaney")
    if mel_norm not in ("slaney", None):
        raise NemoFormatError(f"preprocessor.mel_norm={mel_norm!r} is not supported ('slaney' or null)")
    win_length = int(sr * window_size)
    n_fft = pre.get("n_fft") or 2 ** math.ceil(math.log2(win_length))
    preemph, highfreq = pre.get("preemph", 0.97), pre.get("highfreq")
    try:
        return FilterbankConfig(
            sample_rate=sr, window_size=window_size, window_stride=window_stride,
            n_fft=_int(n_fft, "preprocessor.n_fft"), n_mels=_int(pre.get("features", 64), "preprocessor.features"),
            f_min=float(pre.get("lowfreq") or 0.0), f_max=float(highfreq) if highfreq else None,
            preemph=None if preemph is None else float(preemph), dither=float(pre.get("dither", 1e-5)),
            log=bool(pre.get("log", True)), log_guard=float(guard),
            normalize=normalize if normalize in ("per_feature", "all_features") else "none",
            norm_eps=NEMO_NORM_EPS, pad_to=_int(pre.get("pad_to", 16), "preprocessor.pad_to"),
            window=window or "none", mel_scale="slaney", mel_norm=mel_norm,
        )
    except (TypeError, ValueError) as e:
        raise NemoFormatError(f"preprocessor: {e}") from e


def vocab_from_nemo(
    config: Mapping[str, Any], decoder: Mapping[str, Any], notes: list[str]
) -> tuple[CharVocab, list[int] | None]:
    """Our CharVocab for NeMo's labels, and the decoder row order if NeMo lists them differently.

    NeMo's ConvASRDecoder appends the blank after ``num_classes`` labels, as this toolkit does.
    Labels that are ours in another order are mapped (rows reordered); other labels raise.
    """
    _check_target(decoder, "decoder", NEMO_DECODER)
    labels, top = decoder.get("vocabulary"), _resolve(config.get("labels"), config, "labels")
    if labels is None and top is None:
        raise NemoFormatError("decoder.vocabulary (or labels) is missing")
    if labels is not None and top is not None and list(labels) != list(top):
        raise NemoFormatError(f"decoder.vocabulary {list(labels)!r} and labels {list(top)!r} differ")
    labels = list(labels if labels is not None else top)
    if not all(isinstance(s, str) and len(s) == 1 for s in labels):
        raise NemoFormatError(f"decoder.vocabulary must hold single characters, got {labels!r}")
    num_classes = decoder.get("num_classes", -1)
    if num_classes is not None and num_classes > 0 and num_classes != len(labels):
        raise NemoFormatError(f"decoder.num_classes={num_classes} but decoder.vocabulary has {len(labels)} labels")
    if decoder.get("add_blank", True) is not True:
        raise NemoFormatError(f"decoder.add_blank={decoder['add_blank']!r}: the blank must be the last output")
    ours = CharVocab()
    if labels == list(ours.symbols):
        return ours, None
    if len(set(labels)) == len(labels) and set(labels) == set(ours.symbols):
        notes.append(f"decoder.vocabulary lists our characters in another order {labels!r}: "
                     f"decoder rows reordered to {list(ours.symbols)!r} (blank stays last)")
        return ours, [labels.index(s) for s in ours.symbols] + [len(labels)]
    extra = sorted(set(labels) - set(ours.symbols))
    missing = sorted(set(ours.symbols) - set(labels))
    raise NemoFormatError(f"decoder.vocabulary {labels!r} is not this toolkit's {list(ours.symbols)!r} "
                          f"(extra {extra}, missing {missing}, {len(labels)} labels): cannot map the outputs")


# ---------------------------------------------------------------------------------------------
# model.pt -> .nemo


def export_nemo(src: str | os.PathLike, dst: str | os.PathLike, *, compress: bool = False) -> Converted:
    """Convert ``model.pt`` (a QuartzNet) into a ``.nemo`` archive at ``dst`` (atomic write).

    ``compress``: gzip the tar (older NeMo releases expect it; current ones read both).
    """
    artifact = read_model_file(src)
    try:
        config, state = artifact_to_nemo(artifact)
    except NemoFormatError as e:
        raise NemoFormatError(f"{src}: {e}") from None
    write_nemo(dst, config, state, compress=compress)
    notes = [f"step {artifact.get('step')} and metrics are not stored in a .nemo"] if artifact.get("step") else []
    return Converted(Path(dst), dict(artifact["model_config"]), _num_params(artifact["model"]), tuple(notes))


def read_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """The ``model.pt`` dict (:func:`asr_core.models.artifact.read_model_file`), errors as NemoFormatError."""
    try:
        return artifact.read_model_file(path)
    except CheckpointError as e:
        raise NemoFormatError(str(e)) from e


def artifact_to_nemo(artifact: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(model_config.yaml dict, NeMo state dict)`` for a ``model.pt`` dict."""
    if artifact["family"] != "quartznet":
        raise NemoFormatError(f"family={artifact['family']!r}: only QuartzNet models are exported to .nemo")
    try:
        model_config = QuartzNetConfig.from_dict(artifact["model_config"])
        features = FilterbankConfig.from_dict(dict(artifact["features"]))
        vocab = CharVocab.from_dict(dict(artifact["vocab"]))
    except (KeyError, TypeError, ValueError) as e:
        raise NemoFormatError(f"invalid model_config, features or vocab: {e}") from e
    if vocab.num_outputs != artifact["num_outputs"]:
        raise NemoFormatError(f"vocab has {vocab.num_outputs} outputs, num_outputs={artifact['num_outputs']}")
    if model_config.in_features != features.n_mels:
        raise NemoFormatError(
            f"model_config.in_features={model_config.in_features} but features.n_mels={features.n_mels}"
        )
    model = build_model_from_config("quartznet", model_config, vocab.num_outputs)
    _check_state(model.state_dict(), artifact["model"], lambda k: k, "model")
    model.load_state_dict(artifact["model"], strict=True)
    config = {
        "sample_rate": features.sample_rate,
        "labels": list(vocab.symbols),
        "preprocessor": features_to_nemo(features),
        "encoder": quartznet_config_to_nemo(model_config),
        "decoder": {"_target_": NEMO_DECODER, "feat_in": model_config.output_channels,
                    "num_classes": len(vocab.symbols), "vocabulary": list(vocab.symbols)},
        "target": NEMO_MODEL,
    }
    fb = mel_filterbank(features.sample_rate, features.n_fft, features.n_mels, features.f_min, features.f_max,
                        features.mel_scale, features.mel_norm)
    state = {}  # NeMo's order: the preprocessor's window, its mel matrix, then the network
    if features.window != "none":  # NeMo registers no window tensor without a window
        state[WINDOW_KEY] = make_window(features.window, features.win_length)
    state[FB_KEY] = fb.unsqueeze(0)
    state.update(dle_to_nemo_keys({k: v.detach().clone() for k, v in model.state_dict().items()}))
    return config, state


def quartznet_config_to_nemo(cfg: QuartzNetConfig) -> dict[str, Any]:
    """NeMo's ConvASREncoder config for ``cfg``: one ``jasper`` entry per block."""
    blocks = [
        {"filters": s.channels, "repeat": s.sub_blocks, "kernel": [s.kernel], "stride": [s.stride],
         "dilation": [s.dilation], "dropout": s.dropout, "residual": s.residual, "separable": s.separable}
        for s in cfg.block_specs()
    ]
    return {"_target_": NEMO_ENCODER, "feat_in": cfg.in_features, "activation": "relu", "conv_mask": True,
            "jasper": blocks}


def features_to_nemo(f: FilterbankConfig) -> dict[str, Any]:
    """NeMo's AudioToMelSpectrogramPreprocessor config for ``f``; refuses what NeMo cannot express."""
    if f.norm_eps != NEMO_NORM_EPS:
        raise NemoFormatError(f"features.norm_eps={f.norm_eps}: NeMo always adds {NEMO_NORM_EPS} to the std")
    if f.mel_scale != "slaney":
        raise NemoFormatError(f"features.mel_scale={f.mel_scale!r}: NeMo's filterbank uses the Slaney mel scale")
    pre = {
        "_target_": NEMO_PREPROCESSOR, "sample_rate": f.sample_rate, "normalize": f.normalize,
        "window_size": f.window_size, "window_stride": f.window_stride, "window": f.window,
        "features": f.n_mels, "n_fft": f.n_fft, "frame_splicing": 1, "dither": f.dither, "preemph": f.preemph,
        "lowfreq": f.f_min, "highfreq": f.f_max, "log": f.log, "log_zero_guard_type": "add",
        "log_zero_guard_value": f.log_guard, "pad_to": f.pad_to,
    }
    if f.mel_norm != "slaney":  # NeMo's default; the key is unknown to old NeMo releases
        pre["mel_norm"] = f.mel_norm
    return pre


def write_nemo(
    path: str | os.PathLike,
    config: Mapping[str, Any],
    state: Mapping[str, torch.Tensor],
    *,
    compress: bool = False,
) -> Path:
    """Write a ``.nemo`` tar (members ``./model_config.yaml``, ``./model_weights.ckpt``) atomically.

    Byte-reproducible: member times (and the gzip header's) are fixed at 0, so the same
    model always gives the same archive (DVC sees an unchanged output).
    """
    weights = io.BytesIO()
    torch.save(dict(state), weights)
    members = {CONFIG_NAME: yaml.safe_dump(dict(config), sort_keys=False).encode("utf-8"),
               WEIGHTS_NAME: weights.getvalue()}
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) if compress else \
                contextlib.nullcontext(raw) as f, tarfile.open(fileobj=f, mode="w") as tf:
            for name, data in members.items():
                info = tarfile.TarInfo(f"./{name}")  # NeMo archives its folder as "."
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                tf.addfile(info, io.BytesIO(data))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    return path


# ---------------------------------------------------------------------------------------------
# helpers


def _section(config: Mapping[str, Any], key: str) -> dict[str, Any]:
    """``config[key]`` with NeMo's older ``cls``/``params`` layout flattened and ``${...}`` resolved."""
    value = config.get(key)
    if not isinstance(value, Mapping):
        raise NemoFormatError(f"{key} is missing from {CONFIG_NAME} (or not a mapping)")
    section = {k: v for k, v in value.items() if k not in ("cls", "params")}
    if "cls" in value:
        section.setdefault("_target_", value["cls"])
    section.update(value.get("params") or {})
    return {k: _resolve(v, config, f"{key}.{k}") for k, v in section.items()}


def _resolve(value: Any, root: Mapping[str, Any], where: str, depth: int = 0) -> Any:
    """Resolve OmegaConf interpolations of whole values (``${sample_rate}``, ``${model.labels}``)."""
    if isinstance(value, list):
        return [_resolve(v, root, f"{where}[{i}]", depth) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _resolve(v, root, f"{where}.{k}", depth) for k, v in value.items()}
    m = _INTERPOLATION.match(value) if isinstance(value, str) else None
    if m is None:
        return value
    parts = m.group(1).split(".")
    if parts[0] == "model" and "model" not in root:
        parts = parts[1:]
    node: Any = root
    for p in parts:
        if not isinstance(node, Mapping) or p not in node or depth > 8:
            raise NemoFormatError(f"{where}={value!r}: cannot resolve the interpolation")
        node = node[p]
    return _resolve(node, root, where, depth + 1)


def _check_target(section: Mapping[str, Any], where: str, want: str) -> None:
    target = section.get("_target_")
    if target is not None and str(target).rsplit(".", 1)[-1] != want.rsplit(".", 1)[-1]:
        raise NemoFormatError(f"{where}._target_={target!r}: only {want} is supported")


def _check_fixed(section: Mapping[str, Any], fixed: Mapping[str, Any], where: str) -> None:
    for key, want in fixed.items():
        if key in section and section[key] != want:
            raise NemoFormatError(f"{where}.{key}={section[key]!r} is not supported (only {want!r})")


def _block_spec(block: Any, where: str) -> BlockSpec:
    if not isinstance(block, Mapping):
        raise NemoFormatError(f"{where} must be a mapping, got {block!r}")
    missing = [k for k in _BLOCK_REQUIRED if k not in block]
    if missing:
        raise NemoFormatError(f"{where} lacks {missing}")
    _check_fixed(block, _BLOCK_FIXED, where)
    unknown = sorted(set(block) - _BLOCK_KNOWN)
    if unknown:
        raise NemoFormatError(f"{where}: unknown keys {unknown}; cannot tell how they change the network")
    kernel, stride, dilation = (_single(block[k], f"{where}.{k}") for k in ("kernel", "stride", "dilation"))
    if kernel % 2 == 0:
        raise NemoFormatError(f"{where}.kernel={kernel}: only odd kernels ('same' padding) are supported")
    if stride > 1 and dilation > 1:
        raise NemoFormatError(f"{where}: stride={stride} with dilation={dilation} is not supported")
    for key in ("residual", "separable"):
        if not isinstance(block.get(key, False), bool):
            raise NemoFormatError(f"{where}.{key}={block[key]!r} must be true or false")
    try:
        return BlockSpec(_int(block["filters"], f"{where}.filters"), kernel,
                         sub_blocks=_int(block["repeat"], f"{where}.repeat"), stride=stride, dilation=dilation,
                         dropout=float(block["dropout"]), separable=block.get("separable", False),
                         residual=block["residual"])
    except (TypeError, ValueError) as e:
        raise NemoFormatError(f"{where}: {e}") from e


def _single(value: Any, where: str) -> int:
    """NeMo writes kernel/stride/dilation as one-element lists (``[33]``)."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return _int(value, where)


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise NemoFormatError(f"{where}={value!r}: expected an integer")
    return value


def _seconds(pre: Mapping[str, Any], key: str, n_key: str, sr: int, default: float) -> float:
    """A window length/stride in seconds from NeMo's seconds (``key``) or samples (``n_key``)."""
    seconds, samples = pre.get(key), pre.get(n_key)
    if seconds and samples:
        raise NemoFormatError(f"preprocessor sets both {key} and {n_key}")
    if samples:
        seconds = _int(samples, f"preprocessor.{n_key}") / sr
        if int(sr * seconds) != samples:
            raise NemoFormatError(f"preprocessor.{n_key}={samples} is not a whole number of samples as seconds")
        return seconds
    return default if seconds is None else float(seconds)


def _nemo_names(state: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """Our key -> NeMo's key for a state dict of this toolkit's QuartzNet."""
    return dict(zip(state, dle_to_nemo_keys(state)))


def _check_state(expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor], name, where: str) -> None:
    """Raise NemoFormatError listing missing, unexpected and mis-shaped keys (as ``name`` gives them)."""
    def listed(keys: list[str]) -> str:
        shown = [name(k) for k in keys[:10]]
        return f"{shown}" + (f" and {len(keys) - 10} more" if len(keys) > 10 else "")

    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [f"{name(k)}: {tuple(got[k].shape)}, model {tuple(expected[k].shape)}"
              for k in expected if k in got and got[k].shape != expected[k].shape]
    problems = [f"missing keys {listed(missing)}"] if missing else []
    problems += [f"unexpected keys {listed(unexpected)}"] if unexpected else []
    problems += [f"shape mismatches {shapes[:10]}"] if shapes else []
    if problems:
        raise NemoFormatError(f"{where} does not fit the QuartzNet its config describes: " + "; ".join(problems))


def _check_featurizer(
    state: Mapping[str, torch.Tensor], f: FilterbankConfig, notes: list[str], strict: bool
) -> None:
    """NeMo's stored mel matrix and window must be the ones our feature config computes."""
    want = {FB_KEY: mel_filterbank(f.sample_rate, f.n_fft, f.n_mels, f.f_min, f.f_max, f.mel_scale,
                                   f.mel_norm).unsqueeze(0)}
    if f.window != "none":
        want[WINDOW_KEY] = make_window(f.window, f.win_length)
    problems = []
    for key, w in want.items():
        got = state.get(key)
        if got is None:
            notes.append(f"{key} is not in the weights: not checked against the preprocessor config")
        elif got.shape != w.shape:
            problems.append(f"{key} has shape {tuple(got.shape)}, the preprocessor config gives {tuple(w.shape)}")
        elif not torch.allclose(got.float(), w, rtol=1e-4, atol=1e-6):
            diff = (got.float() - w).abs().max().item()
            problems.append(f"{key} differs from the one the preprocessor config gives (max |diff| {diff:.3g})")
    extra = sorted(k for k in state if k.startswith("preprocessor.") and k not in want)
    if extra:
        notes.append(f"ignored preprocessor tensors {extra}")
    if problems:
        msg = "; ".join(problems) + ": the features would not be the ones the model was trained on"
        if strict:
            raise NemoFormatError(msg + " (check_features=False / --no-check-features imports anyway)")
        notes.append(msg)


def _num_params(state: Mapping[str, torch.Tensor]) -> int:
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    return sum(v.numel() for k, v in state.items() if not k.endswith(buffers))


def _save_torch(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
