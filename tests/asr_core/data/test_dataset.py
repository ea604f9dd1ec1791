"""Data side of the training loop: manifest, dataset, bucketing sampler, collate, resumable loader."""

import warnings

import numpy as np
import pytest
import torch

from asr_core.data.collate import collate_batch
from asr_core.data.dataset import AudioDataset, BadUtterance, Manifest, StringArray, build_loader
from asr_core.data.sampler import BucketingBatchSampler, padding_fraction
from asr_core.io import write_jsonl
from asr_core.testing import write_audio
from asr_core.text import CharVocab

N_GOOD = 20
BAD = {"bad_missing": "missing file", "bad_corrupt": "unreadable", "bad_rate": "sample rate 8000"}
TOKENIZE = CharVocab().encode


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """20 FLAC clips of 0.2-2 s, 3 bad ones, one row too long and one too short; relative paths."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz '"))
    rows = []
    for i, dur in enumerate(rng.permutation(np.round(np.linspace(0.2, 2.0, N_GOOD), 2))):
        rel = f"audio/train/utt{i:02d}.flac"
        write_audio(root / rel, float(dur), seed=i)
        text = "".join(rng.choice(letters, size=int(rng.integers(1, 12)))).strip() or "a"
        rows.append({"audio_filepath": rel, "duration": float(dur), "text": text, "utt_id": f"utt{i:02d}"})
    (root / "audio/train/bad_corrupt.flac").write_bytes(b"fLaC but not really a flac file" * 10)
    write_audio(root / "audio/train/bad_rate.flac", 1.0, sample_rate=8000)
    extra = [("bad_missing", 1.0), ("bad_corrupt", 1.0), ("bad_rate", 1.0), ("too_long", 17.0), ("too_short", 0.1)]
    for utt_id, dur in extra:
        rows.append({"audio_filepath": f"audio/train/{utt_id}.flac", "duration": dur, "text": "x", "utt_id": utt_id})
    write_jsonl(root / "train.jsonl", rows)
    return root / "train.jsonl"


def gain_and_crop(wave, rng):
    """Stand-in for speed perturbation: a random gain and a random length change."""
    keep = int(len(wave) * rng.uniform(0.8, 1.0))
    return wave[:keep] * float(rng.uniform(0.5, 1.5))


def epoch_batches(loader, sampler, epoch, limit=None):
    """The batches of one epoch, or its first ``limit`` batches."""
    sampler.set_epoch(epoch)
    out = []
    for batch in loader:
        out.append(batch)
        if limit is not None and len(out) == limit:
            break
    return out


def assert_same_batches(a, b):
    assert [x["utt_ids"] for x in a] == [x["utt_ids"] for x in b]
    assert all(torch.equal(x["waves"], y["waves"]) for x, y in zip(a, b))


# -- manifest -------------------------------------------------------------------------------


def test_manifest_filters_counts_and_resolves_paths(corpus):
    m = Manifest.load(corpus, min_duration=0.15, max_duration=16.7)
    assert len(m) == N_GOOD + len(BAD)
    assert m.dropped == {"too_short": 1, "too_long": 1}
    assert m.durations.dtype == np.float32 and m.durations.max() <= 2.0
    i = list(m.utt_ids).index("utt03")
    assert m.audio_path(i) == str(corpus.parent / "audio/train/utt03.flac")
    short = m.filter_duration(max_duration=1.0)  # a new manifest; the old one is untouched
    assert len(m) == N_GOOD + len(BAD) and short.dropped["too_long"] == 1 + int((m.durations > 1.0).sum())
    assert list(short.utt_ids) == [u for u, d in zip(m.utt_ids, m.durations) if d <= 1.0]
    assert list(short.texts) == [t for t, d in zip(m.texts, m.durations) if d <= 1.0]
    s = StringArray.from_strings(["", "héllo", "x"])
    assert list(s) == ["", "héllo", "x"] and list(s.take(np.array([2, 1]))) == ["x", "héllo"]


def test_manifest_bad_row_names_the_row(tmp_path):
    write_jsonl(
        tmp_path / "m.jsonl",
        [{"audio_filepath": "a.flac", "duration": 1.0, "text": "a"}, {"audio_filepath": "b.flac", "text": "b"}],
    )
    with pytest.raises(ValueError, match=r"m.jsonl: row 2: 'duration'"):
        Manifest.load(tmp_path / "m.jsonl")


# -- sampler --------------------------------------------------------------------------------


def test_budget_respected_and_every_utterance_once(corpus):
    d = Manifest.load(corpus, max_duration=16.7).durations
    s = BucketingBatchSampler(d, max_batch_seconds=4.0, num_buckets=4, seed=3)
    for epoch in range(3):
        s.set_epoch(epoch)
        batches = list(s)
        assert len(batches) == len(s)
        assert all(len(b) * d[b].max() <= 4.0 for b in batches)
        assert sorted(i for b in batches for i in b) == list(range(len(d)))
    with pytest.raises(ValueError, match="exceeds max_batch_seconds"):
        BucketingBatchSampler(d, max_batch_seconds=1.0)


def test_bucketing_reduces_padding():
    d = np.random.default_rng(1).uniform(0.5, 16.7, 3000)
    result = {}
    for name, buckets in [("random", 1), ("bucketed", 30)]:
        s = BucketingBatchSampler(d, batch_size=32, num_buckets=buckets, seed=0)
        b = BucketingBatchSampler(d, max_batch_seconds=300.0, num_buckets=buckets, seed=0)
        result[name] = (padding_fraction(d, list(s)), len(b))
    print("padding fraction, budget batches per epoch:", result)
    assert result["bucketed"][0] < 0.25 * result["random"][0]  # ~0.03 vs ~0.48
    assert result["bucketed"][1] < 0.7 * result["random"][1]  # the same budget holds more audio


@pytest.mark.parametrize("mode", [{"batch_size": 3}, {"max_batch_seconds": 3.0}])
@pytest.mark.parametrize("drop_last", [False, True])
def test_two_replicas_equal_and_disjoint(mode, drop_last):
    d = np.random.default_rng(2).uniform(0.2, 2.0, 47)
    for epoch in range(4):
        shards = []
        for rank in range(2):
            s = BucketingBatchSampler(d, num_buckets=5, seed=7, drop_last=drop_last, num_replicas=2, rank=rank, **mode)
            s.set_epoch(epoch)
            shards.append(list(s))
            assert len(shards[-1]) == len(s) > 0
        assert len(shards[0]) == len(shards[1])
        seen = [i for shard in shards for b in shard for i in b]
        assert len(seen) == len(set(seen))  # no utterance twice in an epoch
        if not drop_last:
            assert sorted(seen) == list(range(len(d)))  # and none left out
        elif "batch_size" in mode:
            assert all(len(b) == 3 for shard in shards for b in shard)


def test_too_little_data_for_the_replicas_fails_early():
    with pytest.warns(UserWarning, match="cannot split"), pytest.raises(ValueError, match="too few"):
        BucketingBatchSampler([1.0], batch_size=1, num_replicas=2, rank=0)


def test_deterministic_per_seed_and_epoch():
    d = np.random.default_rng(3).uniform(0.2, 2.0, 60)

    def plan(seed, epoch):
        s = BucketingBatchSampler(d, max_batch_seconds=5.0, num_buckets=3, seed=seed)
        s.set_epoch(epoch)
        return list(s)

    assert plan(0, 0) == plan(0, 0) and plan(5, 2) == plan(5, 2)
    assert plan(0, 0) != plan(0, 1) and plan(0, 0) != plan(1, 0)
    ordered = BucketingBatchSampler(d, batch_size=4, shuffle=False)
    flat = [i for b in ordered for i in b]
    assert flat == np.argsort(d, kind="stable").tolist()  # no shuffle: shortest first


def test_sampler_resume_mid_epoch():
    d = np.random.default_rng(4).uniform(0.2, 2.0, 50)
    kw = dict(max_batch_seconds=4.0, num_buckets=4, seed=11, num_replicas=2, rank=1)
    a = BucketingBatchSampler(d, **kw)
    a.set_epoch(2)
    full = list(a)
    a.mark_consumed(3)
    state = a.state_dict()
    assert state["epoch"] == 2 and state["batches_consumed"] == 3 and state["seed"] == 11
    b = BucketingBatchSampler(d, **kw)
    b.load_state_dict(state)
    b.set_epoch(2)  # the resumed loop calls it again: the position stays
    assert len(b) == len(full) and b.remaining == len(full) - 3
    assert list(b) == full[3:]
    b.set_epoch(3)
    assert b.batches_consumed == 0 and len(list(b)) == len(b)
    with pytest.raises(ValueError, match="seed"):
        BucketingBatchSampler(d, **{**kw, "seed": 12}).load_state_dict(state)
    with pytest.raises(ValueError, match="fingerprint"):
        BucketingBatchSampler(d, **{**kw, "max_batch_seconds": 5.0}).load_state_dict(state)
    done = BucketingBatchSampler(d, **kw)
    done.mark_consumed(len(done))
    with pytest.warns(UserWarning, match="fully consumed"):
        assert list(done) == []


# -- dataset and collate --------------------------------------------------------------------


def test_dataset_items_and_bad_utterances(corpus):
    ds = AudioDataset(Manifest.load(corpus), TOKENIZE, wave_transform=gain_and_crop, seed=1)
    i = list(ds.manifest.utt_ids).index("utt05")
    item = ds[i]
    assert item["wave"].dtype == torch.float32 and item["wave"].ndim == 1
    assert item["tokens"].tolist() == TOKENIZE(ds.manifest.texts[i])
    assert torch.equal(ds[i]["wave"], item["wave"])  # same (seed, epoch, index): same augmentation
    ds.set_epoch(1)
    assert not torch.equal(ds[i]["wave"], item["wave"])
    for utt_id, reason in BAD.items():
        j = list(ds.manifest.utt_ids).index(utt_id)
        bad = ds[j]
        assert isinstance(bad, BadUtterance) and bad.utt_id == utt_id and reason in bad.reason
        with pytest.raises(BadUtterance, match=utt_id):
            ds.load(j)


def test_collate_pads_and_reports_skipped():
    items = [
        {"utt_id": "a", "wave": torch.ones(5), "tokens": torch.tensor([1, 2]), "duration": 0.5},
        BadUtterance("b", "/x/b.flac", "missing file"),
        None,
        {"utt_id": "c", "wave": torch.ones(3), "tokens": torch.tensor([3, 4, 5]), "duration": 0.3},
    ]
    batch = collate_batch(items, pad_id=28)
    assert batch["waves"].shape == (2, 5) and batch["waves"][1, 3:].abs().sum() == 0
    assert batch["wave_lens"].tolist() == [5, 3] and batch["token_lens"].tolist() == [2, 3]
    assert batch["tokens"].tolist() == [[1, 2, 28], [3, 4, 5]]
    assert batch["utt_ids"] == ["a", "c"] and batch["durations"].dtype == torch.float32
    assert batch["skipped"] == [("b", "missing file (/x/b.flac)"), (None, "item is None")]
    empty = collate_batch([BadUtterance("b", "p", "r")])
    assert empty["waves"].shape == (0, 0) and empty["tokens"].shape == (0, 0) and empty["skipped"] == [("b", "r (p)")]


# -- loader ---------------------------------------------------------------------------------


def test_loader_reports_bad_files_and_keeps_going(corpus):
    loader, sampler = build_loader(
        corpus, TOKENIZE, max_batch_seconds=4.0, num_buckets=3, num_workers=2, seed=5, min_duration=0.15
    )
    assert loader.dataset.manifest.dropped == {"too_short": 1, "too_long": 1}  # default max_duration 16.7 s
    batches = epoch_batches(loader, sampler, 0)
    assert len(batches) == len(sampler)
    kept = [u for b in batches for u in b["utt_ids"]]
    skipped = {u: reason for b in batches for u, reason in b["skipped"]}
    assert sorted(kept) == [f"utt{i:02d}" for i in range(N_GOOD)]
    assert sorted(skipped) == sorted(BAD) and all(BAD[u] in skipped[u] for u in BAD)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_loader_resume_equals_uninterrupted(corpus, num_workers):
    kw = dict(max_batch_seconds=3.0, num_buckets=3, seed=9, num_workers=num_workers, wave_transform=gain_and_crop)
    loader, sampler = build_loader(corpus, TOKENIZE, **kw)
    reference = epoch_batches(loader, sampler, 1)
    assert len(reference) > 4

    loader, sampler = build_loader(corpus, TOKENIZE, **kw)
    epoch_batches(loader, sampler, 0)
    head = epoch_batches(loader, sampler, 1, limit=3)  # workers have prefetched beyond these
    state = sampler.state_dict()
    assert state["batches_consumed"] == 3
    del loader, sampler

    loader, sampler = build_loader(corpus, TOKENIZE, **kw)
    sampler.load_state_dict(state)
    assert len(loader) == len(reference)
    tail = epoch_batches(loader, sampler, state["epoch"])
    assert_same_batches(head + tail, reference)


def test_augmentation_independent_of_workers_and_batching(corpus):
    def waves_by_utt(**kw):
        loader, sampler = build_loader(corpus, TOKENIZE, seed=2, wave_transform=gain_and_crop, **kw)
        out = {}
        for epoch in range(2):
            for b in epoch_batches(loader, sampler, epoch):
                out.update({(epoch, u): w[:n] for u, w, n in zip(b["utt_ids"], b["waves"], b["wave_lens"])})
        return out

    single = waves_by_utt(batch_size=4, num_workers=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        workers = waves_by_utt(max_batch_seconds=3.0, num_workers=2, persistent_workers=True)
    assert single.keys() == workers.keys() and len(single) == 2 * N_GOOD
    assert all(torch.equal(single[k], workers[k]) for k in single)
    assert not torch.equal(single[(0, "utt00")], single[(1, "utt00")])  # a new epoch draws anew
