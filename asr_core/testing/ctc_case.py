"""A tiny random QuartzNet checkpoint and a ``test`` split of mixed lengths: the export tests' case."""

from __future__ import annotations

from pathlib import Path

import torch

from asr_core.features import FilterbankConfig
from asr_core.io import write_jsonl
from asr_core.models import build_model, model_config
from asr_core.models.artifact import save_model
from asr_core.testing.audio import write_audio
from asr_core.text import CharVocab


def tiny_ctc_case(root: str | Path, durations: tuple[float, ...], **overrides) -> tuple[Path, torch.nn.Module]:
    """``root/models/m/model.pt`` (QuartzNet ``tiny`` with ``overrides``, seed 0) and ``root/data/test.jsonl``
    with one utterance per duration (text "a cat"). Returns (checkpoint path, model)."""
    root = Path(root)
    torch.manual_seed(0)
    vocab = CharVocab()
    cfg = model_config("quartznet", "tiny", **overrides)
    model = build_model("quartznet", "tiny", vocab.num_outputs, **overrides)
    with torch.no_grad():  # a less flat output distribution than at init: greedy ties are not a concern
        model.decoder.layers[0].weight.mul_(8.0)
    path = save_model(
        root / "models" / "m" / "model.pt",
        kind="ctc",
        frontend="filterbank",
        family="quartznet",
        model_config=cfg.to_dict(),
        num_outputs=vocab.num_outputs,
        features=FilterbankConfig().to_dict(),
        vocab=vocab.to_dict(),
        state_dict=model.state_dict(),
        step=0,
    )
    rows = []
    for i, d in enumerate(durations):
        write_audio(root / "data" / "audio" / f"u{i}.flac", d, 16000, seed=i)
        rows.append({"audio_filepath": f"audio/u{i}.flac", "duration": d, "text": "a cat", "utt_id": f"u{i}"})
    write_jsonl(root / "data" / "test.jsonl", rows)
    return path, model
