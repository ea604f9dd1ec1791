"""The transducer recipe (edgedict's RNN-T; any encoder family under a transducer head) for
:func:`engine.train`.

What it builds, from a params dict (``params/profiles/rnnt.yaml``, keys checked): see
:class:`~asr_core.train.supervised.SupervisedRecipe` for the vocabulary, front end, model, loaders,
optimizer and ``model.pt``. The transducer parts:

- vocab: the tokenizer stage's sentencepiece model (``data.vocab: data/tokenizer/spm.model``),
  blank = piece 0, which doubles as the prediction network's start symbol;
- model: the family's encoder (the LSTM transcriber of ``rnnt``, a Conformer, ...) under
  a prediction network + joint (``model.head_config``; the ``rnnt`` presets size them);
- features: the family's front end (``rnnt``: 80 mels, n_fft 512, no CMVN, streaming-exact);
  the same per-batch seeded dither and SpecAugment and per-utterance trim and speed
  perturbation as every recipe (edgedict: 1 freq mask <= 5, 2 time masks <= 50);
- loss: the transducer loss on the fp32 lattice (``asr_core.models.rnnt.loss``; pruned to
  ``head_config.prune_range`` nodes a frame when set, ``asr_core.models.rnnt.pruned_loss``; the
  encoder may run under autocast), plus ``head_config.ctc_weight`` x CTC on the encoder when set;
- optimizer: edgedict's Adam lr 5e-4, 10k warm-up steps, plateau halving on the dev WER
  (``schedule: {name: plateau, ...}``); any optimizer/schedule of ``asr_core.train`` works;
- evaluate: greedy decoding (``decoding.max_symbols``) of the dev manifest (its first N rows),
  WER/CER, mean dev loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from asr_core.decoding.rnnt_greedy import greedy_decode
from asr_core.train.schedule import ScheduleConfig
from asr_core.train.sections import AugmentParams, DataParams, ModelParams, OptimParams, RecipeConfig
from asr_core.train.supervised import SupervisedRecipe


@dataclass
class DecodingParams:
    max_symbols: int = 5  # greedy: tokens per encoder frame at most


@dataclass
class TransducerRecipeConfig(RecipeConfig):
    model: ModelParams = field(default_factory=lambda: ModelParams(family="rnnt", preset="tiny"))
    data: DataParams = field(
        default_factory=lambda: DataParams(
            vocab="data/tokenizer/spm.model", max_batch_seconds=64.0, eval_batch_seconds=120.0
        )
    )
    augment: AugmentParams = field(default_factory=lambda: AugmentParams(speed_perturb=None, spec_augment=None))
    optim: OptimParams = field(
        default_factory=lambda: OptimParams(
            name="adam",
            lr=5e-4,
            weight_decay=0.0,
            ema=None,
            schedule={"name": "plateau", "warmup_steps": 10000, "factor": 0.5, "patience": 1, "min_lr": 1e-6},
        )
    )
    decoding: DecodingParams = field(default_factory=DecodingParams)

    def validate(self) -> None:
        from asr_core.features.frontends import frontend_config
        from asr_core.models import family_frontend, model_config, resolve_head

        m = self.model
        cfg = model_config(m.family, m.preset, **m.overrides)  # fail now on a bad family, preset or field
        if resolve_head(m.family, cfg, m.head or "transducer", m.head_config)[0] != "transducer":
            raise ValueError(f"model.head: the transducer recipe trains a transducer head, got {m.head!r}")
        if family_frontend(m.family) == "waveform":
            raise ValueError(f"model.family: {m.family} reads waveforms; a transducer needs a filterbank encoder")
        frontend_config(family_frontend(m.family), self.features)  # fail now on a bad key
        ScheduleConfig.from_dict(self.optim.schedule)
        if self.data.loader != "torch":
            raise ValueError(
                f"data.loader: the transducer recipe evaluates with the torch loader, got {self.data.loader!r}"
            )
        if self.decoding.max_symbols < 1:
            raise ValueError(f"decoding.max_symbols must be >= 1, got {self.decoding.max_symbols}")


class TransducerRecipe(SupervisedRecipe):
    """A transducer (any filterbank encoder family) for :func:`asr_core.train.engine.train`."""

    kind = "transducer"
    head_prefixes = ("predictor.", "joint.")

    def check_vocab(self, vocab) -> None:
        if vocab.blank != 0:
            raise ValueError(
                f"data.vocab: {self.cfg.data.vocab}: a transducer needs a vocabulary whose blank is symbol 0 "
                f"(the tokenizer stage's spm.model); this one has it at {vocab.blank}"
            )

    # -- training -------------------------------------------------------------------------------
    def loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor | None, int]:
        n = batch["feats"].size(0)
        if n == 0:
            return None, 0
        dev = self.device
        token_lens = batch["token_lens"].to(dev, non_blocking=True)
        losses = model(
            batch["feats"].to(dev, non_blocking=True),
            batch["feat_lens"].to(dev, non_blocking=True),
            batch["tokens"].to(dev, non_blocking=True),
            token_lens,
            reduction="none",
        )
        return self.reduce_loss(losses, token_lens)

    # -- evaluation -----------------------------------------------------------------------------
    def decode(self, model, feats, feat_lens, texts):
        ids = greedy_decode(model, feats, feat_lens, self.cfg.decoding.max_symbols)
        tokens, token_lens = self.targets(texts)
        return [self.vocab.decode(h) for h in ids], float(model(feats, feat_lens, tokens, token_lens, reduction="sum"))
