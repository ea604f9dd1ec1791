"""The in-memory feature cache (``train.data.cache_features``): batches from the cache equal those
computed per batch, later epochs read no audio, the dither is drawn once per utterance and
reproducibly, a resumed run is bit-identical, and the settings it cannot serve are refused."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

from asr_core.data.collate import FeatureCollate
from asr_core.data.dataset import build_loader
from asr_core.data.feature_cache import FeatureCache
from asr_core.features import SpecAugmentConfig
from asr_core.models.rnnt.features import RNNTFilterbank, rnnt_features_config
from asr_core.testing import SMALL_QUARTZNET, make_corpus
from asr_core.train.engine import TrainConfig, train


def _encode(text: str) -> list[int]:
    return [1 + (ord(c) % 20) for c in text]


def _loader(corpus: Path, frontend, cached: bool, seed: int = 3, spec=None):
    wrap = functools.partial(FeatureCache, frontend=frontend, seed=seed) if cached else None
    loader, sampler = build_loader(
        corpus / "train.jsonl", _encode, batch_size=3, seed=seed, max_duration=None, wrap_dataset=wrap
    )
    loader.collate_fn = FeatureCollate(frontend, spec, train=True, seed=seed, dataset=loader.dataset, cached=cached)
    return loader, sampler


def _epoch(loader, sampler, epoch: int) -> list[dict]:
    sampler.set_epoch(epoch)
    return list(loader)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("cache"), splits=(("train", 8),), missing=1)


def test_cached_batches_equal_computed_ones_and_later_epochs_read_no_audio(corpus, tmp_path):
    fb = RNNTFilterbank(rnnt_features_config({"dither": 0.0}))
    plain = _epoch(*_loader(corpus, fb, cached=False), 0)
    loader, sampler = _loader(corpus, fb, cached=True)
    first = _epoch(loader, sampler, 0)
    assert loader.dataset.cached == 8 and loader.dataset.nbytes > 0  # the missing file is not cached
    for p, c in zip(plain, first, strict=True):
        assert p["utt_ids"] == c["utt_ids"] and p["skipped"] == c["skipped"]
        assert torch.equal(p["feat_lens"], c["feat_lens"]) and torch.equal(p["tokens"], c["tokens"])
        assert torch.allclose(p["feats"], c["feats"], atol=1e-4), (p["feats"] - c["feats"]).abs().max()
        assert c["audio_seconds"] == pytest.approx(p["audio_seconds"])
    assert any(s[0] == "gone0" for b in first for s in b["skipped"])  # a bad file is still reported

    moved = tmp_path / "audio"
    (corpus / "audio").rename(moved)  # the next epoch must come from memory alone
    try:
        second = _epoch(loader, sampler, 1)
    finally:
        moved.rename(corpus / "audio")
    assert sorted(u for b in second for u in b["utt_ids"]) == sorted(u for b in first for u in b["utt_ids"])
    assert any(s[0] == "gone0" for b in second for s in b["skipped"])


def test_dither_is_drawn_once_per_utterance_and_the_same_in_a_fresh_cache(corpus):
    fb = RNNTFilterbank(rnnt_features_config({"dither": 1e-3}))
    spec = SpecAugmentConfig(freq_masks=1, max_freq=5, time_masks=0)
    a, b = (_loader(corpus, fb, cached=True, spec=spec) for _ in range(2))
    a0, b0 = _epoch(*a, 0), _epoch(*b, 0)
    for x, y in zip(a0, b0, strict=True):  # a resumed run rebuilds the cache: the same features
        assert torch.equal(x["feats"], y["feats"])
    cache_a = a[0].dataset
    held = {i: cache_a[i]["feats"].clone() for i in range(8)}
    _epoch(*a, 1)
    assert all(torch.equal(cache_a[i]["feats"], held[i]) for i in range(8))  # SpecAugment never writes into the cache
    undithered = FeatureCache(cache_a.dataset, RNNTFilterbank(rnnt_features_config({"dither": 0.0})), 3)
    assert not torch.equal(undithered[0]["feats"], held[0])


def _recipe(corpus: Path, steps: int, **data):
    from asr_core.train.ctc_recipe import CTCRecipe, CTCRecipeConfig

    params = {
        "model": {"family": "quartznet", "preset": "tiny", "overrides": dict(SMALL_QUARTZNET)},
        "data": {
            "train_manifest": str(corpus / "train.jsonl"),
            "dev_manifest": None,
            "vocab": None,
            "batch_size": 3,
            "max_batch_seconds": None,
            "num_workers": 0,
            "cache_features": True,
            **data,
        },
        "augment": {"speed_perturb": None, "spec_augment": {"freq_masks": 1, "max_freq": 8, "time_masks": 1}},
        "optim": {"name": "adam", "lr": 0.003, "schedule": {"name": "polynomial", "warmup_steps": 1}},
    }
    return CTCRecipe(CTCRecipeConfig.from_dict(params), max_steps=steps, seed=5)


def test_a_run_on_cached_features_resumes_bit_identically(corpus, tmp_path):
    torch.set_num_threads(1)
    straight = _recipe(corpus, 7)  # 3 batches an epoch: the cache serves epochs 1 and 2
    train(TrainConfig(max_steps=7, ckpt_every=0, log_every=1, seed=5), straight, tmp_path / "one")
    first = _recipe(corpus, 7)
    train(TrainConfig(max_steps=4, ckpt_every=4, log_every=1, seed=5), first, tmp_path / "two")
    resumed = _recipe(corpus, 7)  # a new process: an empty cache
    out = train(TrainConfig(max_steps=7, ckpt_every=4, log_every=1, seed=5), resumed, tmp_path / "two")
    assert out["resumed_from"] == 4
    assert isinstance(resumed.train_loader.dataset, FeatureCache) and resumed.train_loader.dataset.cached > 0
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


@pytest.mark.parametrize(
    ("data", "augment", "match"),
    [
        ({}, {"speed_perturb": {}}, "augment.speed_perturb"),
        ({"num_workers": 1}, {"speed_perturb": None}, "data.num_workers"),
    ],
)
def test_settings_the_cache_cannot_serve_are_refused_naming_the_param(corpus, data, augment, match):
    from asr_core.train.ctc_recipe import CTCRecipe, CTCRecipeConfig

    params = {
        "model": {"family": "quartznet", "preset": "tiny", "overrides": dict(SMALL_QUARTZNET)},
        "data": {"train_manifest": str(corpus / "train.jsonl"), "dev_manifest": None, "vocab": None},
        "augment": augment,
    }
    params["data"].update(cache_features=True, batch_size=3, max_batch_seconds=None, **data)
    with pytest.raises(ValueError, match=match):
        CTCRecipe(CTCRecipeConfig.from_dict(params), max_steps=2, seed=0)


def test_wav2vec2_refuses_a_feature_cache():
    from asr_core.train.wav2vec2_recipe import Wav2Vec2RecipeConfig

    with pytest.raises(ValueError, match="data.cache_features"):
        Wav2Vec2RecipeConfig.from_dict({"model": {"family": "wav2vec2"}, "data": {"cache_features": True}})
