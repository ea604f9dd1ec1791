"""The base of the supervised recipes (CTC, transducer): one model = encoder family x head x vocabulary.

From a :class:`~asr_core.train.sections.RecipeConfig` it builds, the same way for every objective:

- vocab: ``data.vocab`` (``chars.json``: characters, blank last; ``spm.model``: sentencepiece
  pieces, blank = piece 0); the model's outputs are its symbols, the blank is the vocabulary's;
- front end: the family's (``asr_core.models.FAMILIES``) with ``features`` applied;
- model: ``build_model(family, preset, V, kind=head, head_config=..., **overrides)``; the
  same initial weights on every rank (seeded);
- data: the duration-bucketed, resumable, rank-sharded train loader and the dev loader
  (:mod:`asr_core.train.building`);
- optimizer, schedule and EMA from ``optim``;
- ``model.pt`` (:mod:`asr_core.models.artifact`) naming the kind, family, head and front end.

Subclasses set ``kind`` and supply ``loss`` and ``decode`` (and may check their config in
``check``); evaluation during training (greedy WER/CER and the mean dev loss) is shared.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from asr_core.decoding.metrics import corpus_errors
from asr_core.features.frontends import build_frontend, frontend_config
from asr_core.models import build_model_from_config, family_frontend, model_config, resolve_head
from asr_core.models.artifact import save_model
from asr_core.text.vocabulary import vocab_from_file
from asr_core.train.building import dev_loader, dev_manifest, optimization, total_steps, train_loader
from asr_core.train.engine import RecipeBase
from asr_core.train.sections import RecipeConfig
from asr_core.train.transfer import load_init_weights


class SupervisedRecipe(RecipeBase):
    """Everything :func:`asr_core.train.engine.train` needs; see the module doc."""

    kind = "ctc"  # the head this recipe trains (asr_core.models.heads)
    head_cfg = None  # its config (a transducer's shapes); None for CTC
    head_prefixes: tuple[str, ...] = ("decoder.",)  # the head's tensors (model.init_from may lack them)

    def __init__(
        self,
        cfg: RecipeConfig,
        *,
        max_steps: int,
        max_epochs: float | None = None,
        grad_accum: int = 1,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        device: str | torch.device = "cpu",
    ) -> None:
        self.cfg, self.seed, self.device = cfg, seed, torch.device(device)
        d, a, m = cfg.data, cfg.augment, cfg.model
        self.vocab = vocab_from_file(d.vocab)
        self.check_vocab(self.vocab)
        self.frontend_name = family_frontend(m.family)
        self.features_cfg = frontend_config(self.frontend_name, cfg.features)
        self.frontend = build_frontend(self.frontend_name, self.features_cfg)
        self.model_cfg = model_config(m.family, m.preset, **m.overrides)
        _, self.head_cfg = resolve_head(m.family, self.model_cfg, self.kind, m.head_config)
        n_in = getattr(self.model_cfg, "in_features", None)
        n_mels = self.frontend.feature_dim
        if n_in is not None and n_mels is not None and n_in != n_mels:
            raise ValueError(
                f"model.overrides.in_features {n_in} != the front end's {n_mels} mel bins (features.n_mels)"
            )
        torch.manual_seed(seed)  # the same initial weights on every rank
        self.model = build_model_from_config(
            m.family, self.model_cfg, self.vocab.num_outputs, kind=self.kind, head_config=m.head_config
        )
        self.transfer = None
        if m.init_from:
            self.transfer = load_init_weights(
                self.model,
                m.init_from,
                family=m.family,
                frontend=self.frontend_name,
                features=self.features_cfg.to_dict(),
                head_prefixes=self.head_prefixes,
            )
            if rank == 0:
                logging.getLogger("asr_core.train").info(self.transfer.summary())
        self.model.to(self.device)

        self.train_loader, self.sampler = train_loader(
            d, a, self.vocab.encode, self.frontend, seed=seed, world_size=world_size, rank=rank
        )
        self.steps_per_epoch = max(1, math.ceil(len(self.sampler) / grad_accum))
        self.max_steps = total_steps(max_steps, max_epochs, self.steps_per_epoch)
        self.optimizer, self.schedule, self.ema = optimization(
            cfg.optim, self.model, max_steps=self.max_steps, steps_per_epoch=self.steps_per_epoch
        )
        self._dev = None

    def check_vocab(self, vocab) -> None:
        """Refuse a vocabulary the objective cannot use (naming ``data.vocab``)."""

    # -- training -------------------------------------------------------------------------------
    def loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor | None, int]:
        raise NotImplementedError

    def reduce_loss(self, losses: torch.Tensor, token_lens: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Per-utterance losses (B,) to the batch loss and the count the engine weights it by:
        the mean over utterances, or with ``optim.loss_normalization: token`` the sum over the
        batch divided by its target tokens (then grad_accum and data-parallel ranks combine per
        token too)."""
        if self.cfg.optim.loss_normalization == "token":
            tokens = int(token_lens.sum())
            return losses.sum() / max(tokens, 1), tokens
        return losses.mean(), int(losses.numel())

    # -- evaluation -----------------------------------------------------------------------------
    def dev_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        """(feats, feat_lens, reference texts) over the dev manifest (or its first N rows)."""
        d = self.cfg.data
        if self._dev is None:
            manifest = dev_manifest(d)
            self._dev = (dev_loader(manifest, d, self.vocab.encode, self.frontend), manifest)
        texts = dict(zip(self._dev[1].utt_ids, self._dev[1].texts))
        for b in self._dev[0]:
            self.dev_skipped += len(b["skipped"])
            if b["feats"].size(0):
                yield b["feats"], b["feat_lens"], [texts[u] for u in b["utt_ids"]]

    def decode(
        self, model: nn.Module, feats: torch.Tensor, feat_lens: torch.Tensor, targets: list[str]
    ) -> tuple[list[str], float]:
        """(greedy transcripts, summed loss over the batch's utterances)."""
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        if not self.cfg.data.dev_manifest:
            return {}
        t0 = time.monotonic()
        self.dev_skipped = 0
        refs, hyps, loss_sum = [], [], 0.0
        for feats, feat_lens, texts in self.dev_batches():
            h, loss = self.decode(model, feats.to(self.device), feat_lens.to(self.device), texts)
            hyps += h
            refs += texts
            loss_sum += loss
        scores = corpus_errors(zip(refs, hyps))
        return {
            "wer": scores["wer"],
            "cer": scores["cer"],
            "loss": loss_sum / max(len(refs), 1),
            "utterances": len(refs),
            "skipped": self.dev_skipped,
            "seconds": time.monotonic() - t0,
        }

    def targets(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded (B, S) token ids and (B,) lengths of ``texts``, on the device."""
        tokens = [torch.tensor(self.vocab.encode(t), dtype=torch.long) for t in texts]
        lens = torch.tensor([len(t) for t in tokens], dtype=torch.long)
        padded = nn.utils.rnn.pad_sequence(tokens, batch_first=True) if tokens else torch.zeros(0, 0, dtype=torch.long)
        return padded.to(self.device), lens.to(self.device)

    # -- the inference artifact -------------------------------------------------------------------
    def save_model(
        self, path: str | os.PathLike, state_dict: dict[str, torch.Tensor], step: int, metrics: dict[str, Any]
    ) -> Path:
        return save_model(
            path,
            kind=self.kind,
            family=self.cfg.model.family,
            frontend=self.frontend_name,
            model_config=self.model_cfg.to_dict(),
            head_config=self.head_cfg.to_dict() if self.head_cfg is not None else None,
            num_outputs=self.vocab.num_outputs,
            features=self.features_cfg.to_dict(),
            vocab=self.vocab.to_dict(),
            state_dict=state_dict,
            step=step,
            metrics=metrics,
        )

    def state_dict(self) -> dict[str, Any]:
        return {"recipe": self.cfg.to_dict()}  # kept in the checkpoint to show what ran; nothing to restore

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore: the recipe is rebuilt from params (the checkpoint shows what ran)."""
