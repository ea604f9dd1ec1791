"""The synthetic corpus: vocabulary, split rules, voices, config errors, and real reproducible audio."""

import dataclasses
import hashlib
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr_core.data.synth import (
    ACCENTS,
    SPLITS,
    VARIANTS,
    SynthConfig,
    UttSpec,
    build_synthetic_corpus,
    held_out_voices,
    make_sentence,
    plan_corpus,
    plan_split,
    split_of_sentence,
    vocabulary,
    voice_grid,
)
from asr_core.data.synth.corpus import render
from asr_core.data.synth.espeak import FEMALE_VARIANTS, missing_voices
from asr_core.text import normalize_text, out_of_alphabet

TINY = dict(train=6, dev=3, test=3, test_unseen_voice=3)


def sha256_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.flac"))}


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_a")
    cfg = SynthConfig(**TINY, workers=2)
    return cfg, out, build_synthetic_corpus(cfg, out, progress=False)


# ---------------------------------------------------------------------------- text


def test_vocabulary_is_large_and_in_alphabet():
    vocab = vocabulary()
    assert len(vocab) >= 1000, len(vocab)
    bad = [w for w in vocab if out_of_alphabet(w) or not w]
    assert not bad, bad[:10]


def test_sentences_are_normalised_use_the_vocabulary_and_vary():
    vocab = vocabulary()
    sentences = [make_sentence(random.Random(i)) for i in range(4000)]
    words = Counter(w for s in sentences for w in s.split())
    assert len(words) >= 1000, len(words)  # the generator really uses a large vocabulary
    assert set(words) <= vocab, sorted(set(words) - vocab)[:10]
    assert all(normalize_text(s) == s and not out_of_alphabet(s) for s in sentences)
    lengths = [len(s.split()) for s in sentences]
    assert min(lengths) >= 4 and max(lengths) <= 18
    assert 6 <= np.mean(lengths) <= 11, np.mean(lengths)
    assert len(set(sentences)) > 0.99 * len(sentences)
    assert make_sentence(random.Random("x")) == make_sentence(random.Random("x"))


def test_grammar_agrees_and_picks_articles():
    sentences = [make_sentence(random.Random(i)) for i in range(4000)]
    text = " " + " | ".join(sentences) + " "
    for wrong in (
        " a apple ",
        " a old ",
        " an big ",
        " he are ",
        " they is ",
        " i is ",
        " she don't ",
        " we was ",
        " doesn't went ",
        " didn't ate ",
    ):
        assert wrong not in text, wrong
    assert " an " in text and "'" in text  # articles and apostrophes (contractions, possessives)


# ---------------------------------------------------------------------------- splits and voices


def test_splits_share_no_sentence_and_follow_the_config():
    cfg = SynthConfig(train=3000, dev=300, test=300, test_unseen_voice=300)
    specs = plan_corpus(cfg)
    by_split = {s: [u.text for u in specs if u.split == s] for s in SPLITS}
    counts = {s: len(t) for s, t in by_split.items()}
    assert counts == {"train": 3000, "dev": 300, "test": 300, "test_unseen_voice": 300}
    for s, texts in by_split.items():
        assert len(set(texts)) == len(texts), s
        assert all(split_of_sentence(t) == s for t in texts)
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            assert not set(by_split[a]) & set(by_split[b]), (a, b)
    assert len({u.utt_id for u in specs}) == len(specs)


def test_plan_depends_on_seed_split_index_only():
    cfg = SynthConfig(**TINY)
    assert plan_split(cfg, "train", 40)[:10] == plan_split(dataclasses.replace(cfg, workers=1, train=999), "train", 10)
    other = plan_split(SynthConfig(**TINY, seed=cfg.seed + 1), "train", 10)
    assert [u.text for u in other] != [u.text for u in plan_split(cfg, "train", 10)]
    spec = plan_split(cfg, "dev", 1)[0]
    lo, hi = cfg.rate_wpm
    assert lo <= spec.rate_wpm <= hi and spec.voice in voice_grid(cfg)


def test_unseen_voices_are_unseen():
    cfg = SynthConfig(train=2000, dev=200, test=200, test_unseen_voice=200)
    held = held_out_voices(cfg)
    assert len(held) == cfg.held_out_voices
    assert {v.split("+")[0] for v in held} == set(cfg.accents)  # spread over every accent
    specs = plan_corpus(cfg)
    unseen = {u.voice for u in specs if u.split == "test_unseen_voice"}
    seen = {u.voice for u in specs if u.split != "test_unseen_voice"}
    assert unseen and unseen <= set(held) and not unseen & seen
    train = Counter(u.voice for u in specs if u.split == "train")
    assert len(train) == len(voice_grid(cfg)) - len(held)  # 2000 utterances reach every seen voice
    female = sum(n for v, n in train.items() if v.split("+")[1] in FEMALE_VARIANTS) / sum(train.values())
    assert 0.4 < female < 0.5, female
    assert held == held_out_voices(SynthConfig(train=1))  # chosen by the seed, not the sizes
    listed = SynthConfig(**TINY, held_out_voices=["en-us+m1", "en+f2"])
    assert {u.voice for u in plan_split(listed, "test_unseen_voice")} <= {"en-us+m1", "en+f2"}


def test_shipped_voice_data_has_every_configured_voice():
    assert missing_voices(ACCENTS, VARIANTS) == []
    assert missing_voices(["en-xx"], ["nobody"]) == ["accent 'en-xx'", "variant 'nobody'"]


# ---------------------------------------------------------------------------- config


def test_config_round_trip_and_clear_errors():
    cfg = SynthConfig(seed=7, snr_db=None, held_out_voices=["en-us+m3"])
    assert SynthConfig.from_dict(cfg.to_dict()) == cfg
    assert SynthConfig.from_dict({"rate_wpm": [150, 160]}).rate_wpm == (150, 160)  # YAML lists
    with pytest.raises(ValueError, match="speling"):
        SynthConfig.from_dict({"seed": 1, "speling": 2})
    with pytest.raises(ValueError, match="rate_wpm"):
        SynthConfig(rate_wpm=(200, 100))
    with pytest.raises(ValueError, match="pitch"):
        SynthConfig(pitch=(10, 150))
    with pytest.raises(ValueError, match="held_out_voices"):
        SynthConfig(held_out_voices=["en-us+nobody"])
    with pytest.raises(ValueError, match="held_out_voices"):
        SynthConfig(held_out_voices=0)  # test_unseen_voice > 0 needs held-out voices
    with pytest.raises(ValueError, match="workers"):
        SynthConfig(workers=0)


# ---------------------------------------------------------------------------- audio


def test_render_margins_gain_and_noise_are_exact():
    speech = np.where(np.arange(4000) % 40 < 20, 8000, -8000).astype(np.int16)
    raw = np.concatenate([np.zeros(300, np.int16), speech, np.zeros(50, np.int16)])
    spec = UttSpec("u", "train", 0, "t", "en-us+m1", 170, 50, 50, margin_s=0.1, gain_db=-6.0, snr_db=None, seed=3)
    clip = render(raw, spec)
    margin = round(0.1 * 22050)
    assert len(clip) == len(speech) + 2 * margin
    assert not clip[:margin].any() and not clip[-margin:].any()
    assert abs(np.abs(clip).max() / 8000 - 10 ** (-6 / 20)) < 1e-3
    noisy = dataclasses.replace(spec, snr_db=20.0)
    a, b = render(raw, noisy), render(raw, noisy)
    assert np.array_equal(a, b) and a[:margin].any()
    snr = 10 * np.log10(np.mean(clip.astype(float) ** 2) / np.mean((a.astype(float) - clip) ** 2))
    assert abs(snr - 20) < 1.0, snr


def test_corpus_items_and_files(tiny_corpus):
    cfg, out, items = tiny_corpus
    assert [it.split for it in items] == ["train"] * 6 + ["dev"] * 3 + ["test"] * 3 + ["test_unseen_voice"] * 3
    for it in items:
        assert it.audio == f"audio/{it.split}/{it.utt_id}.flac" and (out / it.audio).is_file()
        assert it.speaker in voice_grid(cfg) and it.duration is None and it.text == normalize_text(it.text)
    assert len(list((out / "audio").rglob("*"))) == len(items) + len(SPLITS)  # no temp files left behind
    assert (out / "synth_params.jsonl").is_file() and (out / "synth_config.json").is_file()


def test_audio_is_speech_like(tiny_corpus):
    _, out, items = tiny_corpus
    for it in items:
        info = sf.info(str(out / it.audio))
        assert (info.samplerate, info.channels, info.format, info.subtype) == (22050, 1, "FLAC", "PCM_16")
        x, sr = sf.read(str(out / it.audio), dtype="float64")
        words = len(it.text.split())
        seconds_per_word = (len(x) / sr - 0.4) / words
        assert 0.12 < seconds_per_word < 0.9, (it.utt_id, len(x) / sr, it.text)
        rms = np.sqrt(np.mean(x**2))
        assert 20 * np.log10(rms) > -35, (it.utt_id, rms)
        head = x[: int(0.09 * sr)]
        assert np.sqrt(np.mean(head**2)) < rms / 10  # quiet margin before the speech
        frames = x[: len(x) // 441 * 441].reshape(-1, 441)  # 20 ms frames
        energy_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
        assert np.percentile(energy_db, 90) - np.percentile(energy_db, 10) > 15  # syllables and pauses, not a hum
        spectrum = np.abs(np.fft.rfft(x)) ** 2
        freqs = np.fft.rfftfreq(len(x), 1 / sr)
        assert spectrum[(freqs > 80) & (freqs < 4000)].sum() > 0.7 * spectrum.sum()  # speech band


def test_same_seed_same_bytes_other_seed_other_bytes(tiny_corpus, tmp_path):
    cfg, out, items = tiny_corpus
    first = sha256_tree(out)
    again = build_synthetic_corpus(dataclasses.replace(cfg, workers=1), tmp_path / "b", progress=False)
    assert again == items
    assert sha256_tree(tmp_path / "b") == first  # also independent of the worker count
    other = build_synthetic_corpus(dataclasses.replace(cfg, seed=cfg.seed + 1), tmp_path / "c", progress=False)
    hashes = sha256_tree(tmp_path / "c")
    assert hashes.keys() == first.keys()
    assert all(hashes[k] != first[k] for k in first)
    assert [it.text for it in other] != [it.text for it in items]
