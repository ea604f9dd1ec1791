"""Training features computed once per utterance and kept in memory (``train.data.cache_features``).

Reading and decoding the audio, trimming its silence and computing the filterbank cost about a
third of a transducer step on 2 cores (57 of ~185 ms for a 28-second batch: decode 19, trim 7,
filterbank 32). An epoch of the built-in corpus is ~1,500 such steps; from the second epoch on a
step is the model's alone (1.31x the audio per second, RESULTS.md). The features of the built-in
corpus's 11 hours take ~1.3 GB (float32).

What caching changes against computing the features per batch:

- the dither (``features.dither``, a 1e-5 full-scale noise that keeps log(0) out of silence) is
  drawn once per utterance, seeded by the run seed and the utterance id, not anew every epoch;
- each utterance's features are computed on its own rather than in a padded batch (the same frames
  to float rounding: the filterbank never reads the padding).

SpecAugment works on the padded batch in :class:`~asr_core.data.collate.FeatureCollate` and still
draws anew every batch. Wave-level augmentation drawn per epoch (speed perturbation) cannot be
cached; the recipe refuses the two together. Silence trimming is deterministic and is cached.

A resumed run rebuilds the cache as it goes and gets the same features (same seeds), so resume
stays bit-exact. The cache lives in the process that reads the data: with loader worker processes
each would hold a copy, so the recipe asks for ``data.num_workers: 0``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from asr_core.data.collate import batch_seed
from asr_core.data.dataset import AudioDataset, BadUtterance


class FeatureCache(Dataset):
    """``cache[i]`` -> ``{"utt_id", "feats": float32 (C, F), "tokens", "duration", "seconds"}`` or a
    :class:`BadUtterance` (never cached: reported again at each read, like the plain dataset).

    ``frontend``: the recipe's front end (run in eval mode; its ``cfg.dither`` is added here);
    ``seed``: the run seed. ``seconds`` is the audio length after the wave transform.
    """

    def __init__(self, dataset: AudioDataset, frontend: nn.Module, seed: int) -> None:
        self.dataset = dataset
        self.frontend = frontend.eval()
        self.dither, self.seed = float(getattr(frontend.cfg, "dither", 0.0)), int(seed)
        self.sample_rate = int(frontend.cfg.sample_rate)
        self._items: dict[int, dict[str, Any]] = {}
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def manifest(self):
        return self.dataset.manifest

    @property
    def epoch(self) -> int:
        return self.dataset.epoch

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    @property
    def cached(self) -> int:
        """Utterances whose features are held."""
        return len(self._items)

    def __getitem__(self, index: int) -> dict[str, Any] | BadUtterance:
        item = self._items.get(index)
        if item is None:
            loaded = self.dataset[index]
            if isinstance(loaded, BadUtterance):
                return loaded
            item = self._features(loaded)
            self._items[index] = item
            self.nbytes += item["feats"].nbytes
        return item

    @torch.no_grad()
    def _features(self, item: dict[str, Any]) -> dict[str, Any]:
        wave = item["wave"]
        if self.dither > 0:
            g = torch.Generator().manual_seed(batch_seed(self.seed, 0, [item["utt_id"]]))
            wave = wave + self.dither * torch.randn(wave.shape, generator=g)
        feats, feat_lens = self.frontend(wave[None], torch.tensor([wave.numel()]))
        return {
            "utt_id": item["utt_id"],
            "feats": feats[0, :, : int(feat_lens[0])].contiguous().clone(),
            "tokens": item["tokens"],
            "duration": item["duration"],
            "seconds": wave.numel() / self.sample_rate,
        }
