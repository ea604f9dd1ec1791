"""Import fairseq wav2vec 2.0 checkpoints without fairseq (pre-trained and CTC fine-tuned).

A fairseq checkpoint is a dict: the model's arguments in ``ckpt["cfg"]["model"]`` (fairseq >=
0.10, a plain dict) or ``ckpt["args"]`` (legacy, an ``argparse.Namespace``), the weights in
``ckpt["model"]``. Fine-tuned (``wav2vec_ctc``) checkpoints hold the pre-training arguments in
``w2v_args`` and prefix the encoder's weights with ``w2v_encoder.w2v_model.``; their output layer
``w2v_encoder.proj`` indexes fairseq's letter dictionary (``dict.ltr.txt``, after ``<s>`` (the
CTC blank), ``<pad>``, ``</s>``, ``<unk>``), which is not in the checkpoint.

Loading uses ``torch.load(weights_only=True)`` with ``argparse.Namespace`` allowed (legacy
``args``); a checkpoint pickling anything else (training checkpoints with meters, omegaconf
objects) is refused with torch's message naming the class. Every tensor must find its place and
every parameter its tensor: a mismatch raises naming the missing and unexpected keys.

Names: ours follow fairseq's except ``feature_extractor.conv_layers.<i>.{0 -> conv, 2 -> norm}``
(``2.1`` with layer norm), the Transformer under ``encoder.transformer`` (fairseq ``encoder``),
the front-end modules under ``encoder`` (fairseq: top level), and the weight-norm parametrisation
of the positional conv (``weight_g`` / ``weight_v`` -> ``parametrizations.weight.original0/1``).
"""

from __future__ import annotations

import argparse
import ast
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from asr_core.models.wav2vec2.config import Wav2Vec2Config

FINETUNED_PREFIX = "w2v_encoder.w2v_model."
HEAD_KEYS = ("w2v_encoder.proj.weight", "w2v_encoder.proj.bias")
FAIRSEQ_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")  # fairseq Dictionary's first four; <s> is the CTC blank


class FairseqImportError(ValueError):
    """A checkpoint that is not a wav2vec 2.0 model this implementation can hold, or weights that do not fit."""


# ---------------------------------------------------------------------------------------------
# Reading the file and its arguments


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` (``argparse.Namespace`` allowed), checked for ``model``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"fairseq checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise FairseqImportError(f"{path}: cannot be loaded with weights_only=True ({type(e).__name__}: "
                                 f"{str(e).splitlines()[0][:300]})") from e
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), Mapping):
        raise FairseqImportError(f"{path}: not a fairseq checkpoint (no 'model' state dict)")
    return ckpt


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, argparse.Namespace):
        return vars(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    raise FairseqImportError(f"expected a dict or Namespace of arguments, got {type(obj).__name__}")


def model_args(ckpt: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """``(pre-training model arguments, fine_tuned)`` from ``cfg`` (new) or ``args`` (legacy)."""
    if ckpt.get("cfg") is not None:
        args = _as_dict(_as_dict(ckpt["cfg"]).get("model") or {})
    elif ckpt.get("args") is not None:
        args = _as_dict(ckpt["args"])
    else:
        raise FairseqImportError("checkpoint has neither 'cfg' nor 'args'")
    finetuned = "w2v_args" in args or any(k.startswith(FINETUNED_PREFIX) for k in ckpt["model"])
    if not finetuned:
        return args, False
    w2v = args.get("w2v_args")
    if w2v is None:
        raise FairseqImportError(f"fine-tuned checkpoint without 'w2v_args' (it points at {args.get('w2v_path')!r}"
                                 f" for them): cannot tell the encoder's shape")
    w2v = _as_dict(w2v)
    inner = _as_dict(w2v["model"]) if isinstance(w2v.get("model"), (Mapping, argparse.Namespace)) else w2v
    # fine-tuning overrides of the encoder's regularisation (fairseq's arg_overrides)
    over = {k: args[k] for k in ("dropout", "attention_dropout", "activation_dropout", "dropout_input",
                                 "encoder_layerdrop", "mask_prob", "mask_length", "mask_channel_prob",
                                 "mask_channel_length", "layerdrop") if k in args}
    if "layerdrop" in over:
        over["encoder_layerdrop"] = over.pop("layerdrop")
    return {**inner, **over}, True


def _conv_layers(spec: Any) -> list[tuple[int, int, int]]:
    """fairseq's ``conv_feature_layers``: a string like ``"[(512, 10, 5)] + [(512, 3, 2)] * 4"``,
    evaluated with lists, tuples, ints, ``+`` and ``*`` only (never ``eval``)."""
    if not isinstance(spec, str):
        return [tuple(int(v) for v in t) for t in spec]

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, (ast.List, ast.Tuple)):
            vals = [ev(e) for e in node.elts]
            return vals if isinstance(node, ast.List) else tuple(vals)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            a, b = ev(node.left), ev(node.right)
            return a + b if isinstance(node.op, ast.Add) else a * b
        raise FairseqImportError(f"conv_feature_layers: unsupported expression {ast.dump(node)[:80]}")

    return [tuple(int(v) for v in t) for t in ev(ast.parse(spec, mode="eval"))]


def _floats(v: Any) -> tuple[float, ...]:
    if isinstance(v, str):
        v = ast.literal_eval(v)
    return tuple(float(x) for x in v)


def config_from_args(args: Mapping[str, Any]) -> Wav2Vec2Config:
    """fairseq ``Wav2Vec2Config`` fields -> :class:`Wav2Vec2Config`; options this model lacks are refused."""
    unsupported = {"quantize_targets": (True,), "quantize_input": (False, None), "latent_dim": (0, None),
                   "target_glu": (False, None), "cross_sample_negatives": (0, None),
                   "codebook_negatives": (0, None), "negatives_from_everywhere": (False, None),
                   "activation_fn": ("gelu", None), "pos_conv_depth": (1, None)}
    bad = {k: args[k] for k, ok in unsupported.items() if k in args and args[k] not in ok}
    if bad:
        raise FairseqImportError(f"fairseq options this implementation does not support: {bad}")
    mode = {"default": "group_norm", "layer_norm": "layer_norm"}.get(args.get("extractor_mode", "default"))
    if mode is None:
        raise FairseqImportError(f"extractor_mode {args.get('extractor_mode')!r}: expected 'default' or 'layer_norm'")
    conv = _conv_layers(args.get("conv_feature_layers", "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] * 2"))
    get = args.get
    return Wav2Vec2Config(
        conv_dims=tuple(c[0] for c in conv), conv_kernels=tuple(c[1] for c in conv),
        conv_strides=tuple(c[2] for c in conv), conv_bias=bool(get("conv_bias", False)), extractor_mode=mode,
        embed_dim=int(get("encoder_embed_dim", 768)), num_layers=int(get("encoder_layers", 12)),
        ffn_dim=int(get("encoder_ffn_embed_dim", 3072)), num_heads=int(get("encoder_attention_heads", 12)),
        layer_norm_first=bool(get("layer_norm_first", False)), pos_conv_kernel=int(get("conv_pos", 128)),
        pos_conv_groups=int(get("conv_pos_groups", 16)), hourglass=get("hourglass_transformer") or None,
        dropout=float(get("dropout", 0.1)), attention_dropout=float(get("attention_dropout", 0.1)),
        activation_dropout=float(get("activation_dropout", 0.0)), dropout_input=float(get("dropout_input", 0.0)),
        dropout_features=float(get("dropout_features", 0.0)), layerdrop=float(get("encoder_layerdrop", 0.0)),
        mask_prob=float(get("mask_prob", 0.65)), mask_length=int(get("mask_length", 10)),
        mask_channel_prob=float(get("mask_channel_prob", 0.0)),
        mask_channel_length=int(get("mask_channel_length", 10)), final_dim=int(get("final_dim", 256) or 256),
        latent_vars=int(get("latent_vars", 320)), latent_groups=int(get("latent_groups", 2)),
        latent_temp=_floats(get("latent_temp", (2.0, 0.5, 0.999995))),
        num_negatives=int(get("num_negatives", 100)), logit_temp=float(get("logit_temp", 0.1)))


def args_from_config(cfg: Wav2Vec2Config) -> dict[str, Any]:
    """The inverse of :func:`config_from_args`: fairseq's argument names for ``cfg``."""
    conv = " + ".join(f"[({d}, {k}, {s})]" for d, k, s in zip(cfg.conv_dims, cfg.conv_kernels, cfg.conv_strides))
    return {"_name": "wav2vec2", "extractor_mode": "default" if cfg.extractor_mode == "group_norm" else "layer_norm",
            "conv_feature_layers": conv, "conv_bias": cfg.conv_bias, "encoder_embed_dim": cfg.embed_dim,
            "encoder_layers": cfg.num_layers, "encoder_ffn_embed_dim": cfg.ffn_dim,
            "encoder_attention_heads": cfg.num_heads, "layer_norm_first": cfg.layer_norm_first,
            "conv_pos": cfg.pos_conv_kernel, "conv_pos_groups": cfg.pos_conv_groups, "dropout": cfg.dropout,
            "attention_dropout": cfg.attention_dropout, "activation_dropout": cfg.activation_dropout,
            "dropout_input": cfg.dropout_input, "dropout_features": cfg.dropout_features,
            "encoder_layerdrop": cfg.layerdrop, "mask_prob": cfg.mask_prob, "mask_length": cfg.mask_length,
            "mask_channel_prob": cfg.mask_channel_prob, "mask_channel_length": cfg.mask_channel_length,
            "final_dim": cfg.final_dim, "latent_vars": cfg.latent_vars, "latent_groups": cfg.latent_groups,
            "latent_temp": str(tuple(cfg.latent_temp)), "num_negatives": cfg.num_negatives,
            "logit_temp": cfg.logit_temp, "quantize_targets": True, "activation_fn": "gelu"}


# ---------------------------------------------------------------------------------------------
# Names


_CONV = re.compile(r"^encoder\.feature_extractor\.conv_layers\.(\d+)\.(conv|norm)\.(weight|bias)$")
_POS = {"parametrizations.weight.original0": "weight_g", "parametrizations.weight.original1": "weight_v",
        "bias": "bias"}


def fairseq_name(key: str, cfg: Wav2Vec2Config) -> str:
    """Our pre-training model's parameter name -> fairseq ``Wav2Vec2Model``'s."""
    m = _CONV.match(key)
    if m:
        i, part, w = m.groups()
        if part == "conv":
            return f"feature_extractor.conv_layers.{i}.0.{w}"
        return f"feature_extractor.conv_layers.{i}.2.{'1.' if cfg.extractor_mode == 'layer_norm' else ''}{w}"
    if key.startswith("encoder.transformer.pos_conv.0."):
        return "encoder.pos_conv.0." + _POS[key.removeprefix("encoder.transformer.pos_conv.0.")]
    if key.startswith("encoder.transformer."):
        return "encoder." + key.removeprefix("encoder.transformer.")
    if key.startswith("encoder."):
        return key.removeprefix("encoder.")  # layer_norm, post_extract_proj, mask_emb
    return key  # quantizer.*, project_q.*, final_proj.*


def to_fairseq_state_dict(state: Mapping[str, torch.Tensor], cfg: Wav2Vec2Config,
                          prefix: str = "") -> dict[str, torch.Tensor]:
    """Our pre-training (or encoder-only, keys ``encoder.*``) state dict in fairseq's names."""
    return {prefix + fairseq_name(k, cfg): v for k, v in state.items()}


def _alias(key: str) -> str:
    """Newer torch/fairseq save the positional conv's weight norm as a parametrisation too."""
    return (key.replace("pos_conv.0.parametrizations.weight.original0", "pos_conv.0.weight_g")
               .replace("pos_conv.0.parametrizations.weight.original1", "pos_conv.0.weight_v"))


def map_state_dict(fairseq_state: Mapping[str, torch.Tensor], native_keys: list[str], cfg: Wav2Vec2Config,
                   prefix: str = "", ignore: tuple[str, ...] = (), where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Pick, for every native key, its fairseq tensor; raise naming missing / unexpected keys."""
    src = {_alias(k): v for k, v in fairseq_state.items()}
    wanted = {k: prefix + fairseq_name(k, cfg) for k in native_keys}
    missing = sorted(f"{f} (for {k})" for k, f in wanted.items() if f not in src)
    used = set(wanted.values())
    unexpected = sorted(k for k in src if k not in used and k not in ignore)
    if missing or unexpected:
        raise FairseqImportError(f"{where}: weights do not fit a wav2vec 2.0 model with its config: "
                                 f"missing {missing[:20]}{' ...' if len(missing) > 20 else ''}, "
                                 f"unexpected {unexpected[:20]}{' ...' if len(unexpected) > 20 else ''}")
    return {k: src[f] for k, f in wanted.items()}


# ---------------------------------------------------------------------------------------------
# The letters dictionary and the CTC head


def read_dictionary(path: str | os.PathLike) -> list[str]:
    """fairseq ``dict.ltr.txt`` -> the full symbol list (the four specials first, as fairseq's Dictionary)."""
    symbols = list(FAIRSEQ_SPECIALS)
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            sym = line.split()[0]
            if sym in symbols:
                raise FairseqImportError(f"{path}: line {n}: symbol {sym!r} twice")
            symbols.append(sym)
    return symbols


def head_rows(symbols: list[str], vocab_symbols: list[str]) -> list[int]:
    """Row of fairseq's output layer for each of our outputs: our symbols then the blank (``<s>``).

    fairseq letters are upper case with ``|`` between words; ours lower case with a space.
    """
    index = {s: i for i, s in enumerate(symbols)}
    rows = []
    for s in vocab_symbols:
        key = "|" if s == " " else s.upper()
        if key not in index and s not in index:
            raise FairseqImportError(f"fairseq dictionary has no symbol for {s!r} (looked for {key!r}); "
                                     f"it has {symbols[4:]}")
        rows.append(index.get(key, index.get(s)))
    return rows + [0]


def import_fairseq(path: str | os.PathLike, *, dictionary: str | os.PathLike | None = None,
                   vocab_symbols: list[str] | None = None):
    """Load a fairseq checkpoint: ``(model, cfg, fine_tuned)``.

    Pre-trained: a :class:`Wav2Vec2ForPreTraining` with every weight. Fine-tuned: with
    ``dictionary`` (its ``dict.ltr.txt``) a ``CTCModel`` whose head rows are fairseq's for our
    ``vocab_symbols`` (default: space, a-z, apostrophe) plus the blank last; without it the
    :class:`Wav2Vec2Encoder` alone (e.g. to fine-tune again). Both in eval mode.
    """
    from asr_core.models.wav2vec2.model import Wav2Vec2Encoder, Wav2Vec2ForPreTraining, wav2vec2_ctc_model

    ckpt = read_checkpoint(path)
    args, finetuned = model_args(ckpt)
    cfg = config_from_args(args)
    state = ckpt["model"]
    if not finetuned:
        model = Wav2Vec2ForPreTraining(cfg)
        model.load_state_dict(map_state_dict(state, list(model.state_dict()), cfg, where=str(path)))
        return model.eval(), cfg, False
    enc_keys = [f"encoder.{k}" for k in Wav2Vec2Encoder(cfg).state_dict()]
    loaded = map_state_dict(state, enc_keys, cfg, prefix=FINETUNED_PREFIX, ignore=HEAD_KEYS, where=str(path))
    if dictionary is None:
        enc = Wav2Vec2Encoder(cfg)
        enc.load_state_dict({k.removeprefix("encoder."): v for k, v in loaded.items()})
        return enc.eval(), cfg, True
    if vocab_symbols is None:
        from asr_core.text import CharVocab

        vocab_symbols = list(CharVocab().symbols)
    symbols = read_dictionary(dictionary)
    weight, bias = (state.get(k) for k in HEAD_KEYS)
    if weight is None or bias is None:
        raise FairseqImportError(f"{path}: fine-tuned checkpoint without {list(HEAD_KEYS)}")
    if weight.size(0) != len(symbols):
        raise FairseqImportError(f"{path}: output layer has {weight.size(0)} rows, {dictionary} gives "
                                 f"{len(symbols)} symbols (with the 4 specials)")
    rows = torch.tensor(head_rows(symbols, vocab_symbols))
    model = wav2vec2_ctc_model(cfg, len(rows))
    model.load_state_dict({**loaded, "decoder.layers.0.weight": weight[rows].unsqueeze(-1),
                           "decoder.layers.0.bias": bias[rows]})
    return model.eval(), cfg, True
