"""Helpers shared by test modules in different folders (fixtures live in conftest.py files)."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from asr_core.models import build_model_from_config
from asr_core.models.artifact import read_model_file, save_model
from asr_core.testing import SMALL_QUARTZNET, make_corpus, make_sentencepiece
from tests import REPO


def rnnt_corpus(root: Path, splits=(("train", 6), ("dev", 3))) -> tuple[Path, Path]:
    """A tiny corpus and a sentencepiece model on its train text: (corpus folder, spm.model)."""
    corpus = make_corpus(root, splits=splits)
    return corpus, make_sentencepiece(corpus, root / "spm")


def rnnt_params(tmp_path: Path, corpus: Path, spm: Path, steps: int = 12) -> Path:
    """params/profiles/rnnt.yaml with tiny overrides: the tiny preset, a few steps, temp paths."""
    section = yaml.safe_load((REPO / "params" / "profiles" / "rnnt.yaml").read_text())["train"]
    section["name"] = "rnnt_test"
    section["model"].update(
        preset="tiny",
        overrides={
            "enc_hidden": 32,
            "enc_proj": 32,
            "pred_hidden": 32,
            "pred_proj": 32,
            "joint_dim": 32,
            "embed_dim": 16,
        },
        head_config={},  # the tiny shapes above, not the profile's prediction network
    )
    section["data"].update(
        train_manifest=str(corpus / "train.jsonl"),
        dev_manifest=str(corpus / "dev.jsonl"),
        vocab=str(spm),
        batch_size=6,
        max_batch_seconds=None,
        num_workers=0,
    )
    section["optim"].update(lr=0.01, schedule={"name": "polynomial", "warmup_steps": 1, "final_lr_scale": 0.5})
    section["loop"].update(max_steps=steps, max_minutes=None, eval_every=steps, ckpt_every=steps // 2, log_every=1)
    section["ray"].update(num_workers=0, torch_threads=1)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({"train": section}))
    return path


def noisy_model(model_path: Path) -> Path:
    """``model.pt`` beside ``model_path`` with fresh weights and a nudged blank: the few-step model
    emits only blanks, this one blanks and up to max_symbols tokens per frame, varying by
    utterance (the cases the carried states must survive)."""
    out = model_path.parent / "noisy.pt"
    if not out.is_file():
        obj = read_model_file(model_path)
        torch.manual_seed(0)
        model = build_model_from_config("rnnt", obj["model_config"], obj["num_outputs"])
        with torch.no_grad():
            model.joint.fc2.bias[0] += 0.2
        save_model(
            out,
            **{k: obj[k] for k in ("kind", "family", "frontend", "model_config", "num_outputs", "features", "vocab")},
            state_dict=model.state_dict(),
            step=0,
        )
    return out


def tiny_train_params(
    tmp_path: Path, corpus: Path, name: str, ray: dict, steps: int = 4, eval_every: int = 2, **loop
) -> Path:
    """The real params/train.yaml with tiny overrides (small QuartzNet, ``steps`` steps, the corpus of
    ``make_corpus``, ``ray`` merged into ``train.ray``), written to ``tmp_path/train.yaml``."""
    section = yaml.safe_load((REPO / "params" / "train.yaml").read_text())["train"]
    section["name"] = name
    section["model"]["overrides"] = dict(SMALL_QUARTZNET)
    section["data"].update(
        train_manifest=str(corpus / "train.jsonl"),
        dev_manifest=str(corpus / "dev.jsonl"),
        vocab=None,
        batch_size=3,
        max_batch_seconds=None,
        num_workers=0,
    )
    section["loop"].update(
        max_steps=steps,
        max_minutes=None,
        eval_every=eval_every,
        ckpt_every=eval_every,
        log_every=1,
        precision="fp32",
        **loop,
    )
    section["optim"]["schedule"].update(warmup_steps=1)  # the default's warm-up is longer than the run
    section["ray"].update(ray)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({"train": section}))
    return path


TINY_CONFORMER = {"d_model": 32, "num_layers": 1, "num_heads": 2, "in_features": 64}


def tiny_conformer_params(corpus: Path, vocab: Path | None = None, **model) -> dict:
    """A supervised recipe's params for a tiny Conformer on ``corpus`` (batches of 3, no augmentation,
    no EMA, 1 warm-up step); ``model``: keys of the model section to set (head, init_from, overrides)."""
    return {
        "model": {"family": "conformer", "preset": "tiny", "overrides": dict(TINY_CONFORMER), **model},
        "data": {
            "train_manifest": str(corpus / "train.jsonl"),
            "dev_manifest": str(corpus / "dev.jsonl"),
            "vocab": str(vocab) if vocab else None,
            "batch_size": 3,
            "max_batch_seconds": None,
            "num_workers": 0,
        },
        "augment": {"speed_perturb": None, "spec_augment": None},
        "optim": {"name": "adamw", "lr": 1e-3, "ema": None, "schedule": {"name": "polynomial", "warmup_steps": 1}},
    }


TINY_RNNT = {"enc_hidden": 32, "enc_proj": 32, "pred_hidden": 32, "pred_proj": 32, "joint_dim": 32, "embed_dim": 16}


def tiny_transducer_file(path: Path, spm: Path, seed: int = 0) -> Path:
    """An untrained tiny transducer ``model.pt`` on ``spm``'s pieces, its blank nudged as
    :func:`noisy_model`'s is, so it emits blanks and tokens (varying by utterance) from the start."""
    from asr_core.models.rnnt import rnnt_model, rnnt_tiny
    from asr_core.models.rnnt.features import rnnt_features_config
    from asr_core.models.rnnt.vocab import SubwordVocab

    vocab = SubwordVocab.load(spm)
    cfg = rnnt_tiny(**TINY_RNNT)
    torch.manual_seed(seed)
    model = rnnt_model(cfg, vocab.num_outputs)
    with torch.no_grad():
        model.joint.fc2.bias[0] += 0.2
    return save_model(
        path,
        kind="transducer",
        family="rnnt",
        frontend="streaming_filterbank",
        model_config=cfg.to_dict(),
        num_outputs=vocab.num_outputs,
        features=rnnt_features_config().to_dict(),
        vocab=vocab.to_dict(),
        state_dict=model.state_dict(),
        step=0,
    )


def tiny_ctc_file(path: Path, seed: int = 0) -> Path:
    """An untrained small QuartzNet ``model.pt`` on characters, its head sharpened (weights x100, the
    space's bias +0.5) so that its best path holds several words, varying with the audio."""
    from asr_core.features import FilterbankConfig
    from asr_core.models import build_model, model_config
    from asr_core.text import CharVocab

    vocab = CharVocab()
    cfg = model_config("quartznet", "tiny", **SMALL_QUARTZNET)
    torch.manual_seed(seed)
    model = build_model("quartznet", "tiny", vocab.num_outputs, **SMALL_QUARTZNET)
    with torch.no_grad():
        head = model.decoder.layers[0]
        head.weight.mul_(100.0)
        head.bias.zero_()
        head.bias[0] += 0.5  # the space: index 0 of the character vocabulary
    return save_model(
        path,
        kind="ctc",
        family="quartznet",
        frontend="filterbank",
        model_config=cfg.to_dict(),
        num_outputs=vocab.num_outputs,
        features=FilterbankConfig().to_dict(),
        vocab=vocab.to_dict(),
        state_dict=model.state_dict(),
        step=0,
    )
