"""The CTC recipe (QuartzNet / Jasper as NVIDIA DeepLearningExamples, "DLE"; any encoder family) for
:func:`engine.train`.

What it builds, from a params dict (``params/train.yaml``, keys checked): see
:class:`~asr_core.train.supervised.SupervisedRecipe` for the vocabulary, front end, model, loaders,
optimizer and ``model.pt``. The CTC parts:

- vocab: characters (``chars.json``, blank last, DLE/NeMo's layout) or sentencepiece pieces
  (``spm.model``, blank = piece 0): the loss and the decoders take the vocabulary's blank;
- loss: CTC, mean over utterances (DLE's ``CTCLossNM``);
- defaults (DLE): Novograd betas (0.95, 0), lr 0.01, weight decay 1e-3; the warm-up / hold /
  exponential-decay schedule given in epochs and converted to steps with the loader's batches per
  epoch (``ceil(batches / grad_accum)``); EMA 0.999 of the weights; speed perturbation 0.85-1.15
  and SpecAugment on;
- evaluate: greedy CTC decoding of the dev manifest (optionally its first N utterances), WER and
  CER, and the mean dev CTC loss.

``data.loader: torch | dali`` selects the *evaluation* feature pipeline. Training always uses the
torch loader: the DALI module implements trim, speed perturbation and dither but its reader
has neither duration bucketing, nor a checkpointable mid-epoch position (exact resume), nor
per-utterance bad-file reporting, and SpecAugment would have to run in the training
process. For evaluation DALI gives the same features as ``FilterbankFeatures`` in eval mode
(tested in ``tests/asr_core/features/test_features.py``), on the GPU when there is one.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from asr_core.data.dataset import Manifest
from asr_core.models import ctc_loss, family_frontend, greedy_decode
from asr_core.train.building import dev_manifest
from asr_core.train.schedule import ScheduleConfig
from asr_core.train.sections import RecipeConfig
from asr_core.train.supervised import SupervisedRecipe


class CTCRecipeConfig(RecipeConfig):
    """The shared sections with DLE's defaults (:class:`RecipeConfig`'s)."""

    def validate(self) -> None:
        from asr_core.features.frontends import frontend_config
        from asr_core.models import model_config, resolve_head

        m = self.model
        cfg = model_config(m.family, m.preset, **m.overrides)  # fail now on a bad family, preset or field
        if resolve_head(m.family, cfg, m.head, m.head_config)[0] != "ctc":
            raise ValueError(f"model.head: the CTC recipe trains a CTC head, got {m.head!r}")
        frontend_config(family_frontend(m.family), self.features)  # fail now on a bad key
        ScheduleConfig.from_dict(self.optim.schedule)
        if self.data.loader not in ("torch", "dali"):
            raise ValueError(f"data.loader must be 'torch' or 'dali', got {self.data.loader!r}")
        if self.data.loader == "dali" and family_frontend(m.family) != "filterbank":
            raise ValueError(
                f"data.loader: dali evaluation computes filterbank features; {m.family} reads "
                f"{family_frontend(m.family)}: use 'torch'"
            )


class CTCRecipe(SupervisedRecipe):
    """A CTC model (any encoder family) for :func:`asr_core.train.engine.train`; see the module doc."""

    kind = "ctc"

    # -- training -------------------------------------------------------------------------------
    def loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor | None, int]:
        n = batch["feats"].size(0)
        if n == 0:
            return None, 0
        dev = self.device
        log_probs, out_lens = model(
            batch["feats"].to(dev, non_blocking=True), batch["feat_lens"].to(dev, non_blocking=True)
        )
        token_lens = batch["token_lens"].to(dev, non_blocking=True)
        losses = ctc_loss(
            log_probs,
            out_lens,
            batch["tokens"].to(dev, non_blocking=True),
            token_lens,
            blank=self.vocab.blank,
            reduction="none",
        )
        return self.reduce_loss(losses, token_lens)

    # -- evaluation -----------------------------------------------------------------------------
    def decode(self, model, feats, feat_lens, texts):
        log_probs, out_lens = model(feats, feat_lens)
        hyps = [self.vocab.decode(ids) for ids in greedy_decode(log_probs, out_lens, self.vocab.blank)]
        tokens, token_lens = self.targets(texts)
        loss = ctc_loss(log_probs, out_lens, tokens, token_lens, blank=self.vocab.blank, reduction="sum")
        return hyps, float(loss)

    def dev_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        if self.cfg.data.loader != "dali":
            yield from super().dev_batches()
            return
        if self._dev is None:
            self._dev = self._dali_loader(dev_manifest(self.cfg.data))
        loader = self._dev
        for feats, feat_lens, idx in loader:
            yield feats, feat_lens, [loader.entries[i]["text"] for i in idx.tolist()]

    def _dali_loader(self, manifest: Manifest):
        from asr_core.features.dali import build_dali_loader
        from asr_core.io import write_jsonl

        self._dali_tmp = tempfile.TemporaryDirectory(prefix="dev_dali_")
        path = Path(self._dali_tmp.name) / "dev.jsonl"  # absolute paths: DALI resolves against the cwd
        write_jsonl(
            path,
            [
                {
                    "audio_filepath": manifest.audio_path(i),
                    "duration": float(manifest.durations[i]),
                    "text": manifest.texts[i],
                }
                for i in range(len(manifest))
            ],
        )
        dev = "gpu" if self.device.type == "cuda" else "cpu"
        return build_dali_loader(
            path, batch_size=32, cfg=self.features_cfg, device=dev, device_id=self.device.index or 0
        )
