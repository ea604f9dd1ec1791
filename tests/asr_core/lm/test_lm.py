"""Word n-gram LMs: counting, modified Kneser-Ney, ARPA write/read (and KenLM parity), lexicon, the lm stage."""

from __future__ import annotations

import gzip
import json
import random
from collections import Counter

import pytest

from asr_core.io import write_jsonl
from asr_core.lm import (
    BOS,
    EOS,
    UNK,
    build_lexicon,
    count_ngrams,
    estimate_kneser_ney,
    install_lm,
    lm_kind,
    read_arpa,
    read_arpa_unigrams,
    read_lexicon,
    write_arpa,
    write_lexicon,
)
from asr_core.lm.kneser_ney import adjusted_counts, discounts
from asr_core.text import CharVocab
from tasks import lm as lm_task

WORDS = ["the", "a", "cat", "dog", "sat", "ran", "on", "mat", "big", "small", "red", "house"]


def _corpus(n=400, seed=0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):  # a Zipf-ish bigram-flavoured text: varied counts of counts
        k = rng.randint(1, 7)
        s = [rng.choice(WORDS[: rng.randint(2, len(WORDS))]) for _ in range(k)]
        out.append(" ".join(s))
    return out


@pytest.fixture(scope="module")
def model3():
    from asr_core.data.synth.grammar import make_sentence

    rng = random.Random(0)  # the synthetic corpus's grammar: realistic counts of counts
    sentences = [make_sentence(rng, max_words=8) for _ in range(300)] + ["the cat sat on the mat"]
    return estimate_kneser_ney(count_ngrams(sentences, 3))


def test_counts_pad_sentences_and_reject_reserved_tokens():
    nc = count_ngrams(["a b", "", "a"], 2)
    assert nc.sentences == 2 and nc.tokens == 5
    assert nc.counts[0][("a",)] == 2 and nc.counts[0][(BOS,)] == 2 and nc.counts[0][(EOS,)] == 2
    assert nc.counts[1][(BOS, "a")] == 2 and nc.counts[1][("a", EOS)] == 1 and nc.counts[1][("b", EOS)] == 1
    with pytest.raises(ValueError, match="reserved"):
        count_ngrams(["a </s> b"], 2)
    with pytest.raises(ValueError, match="no non-empty"):
        count_ngrams(["", "  "], 2)
    with pytest.raises(ValueError, match="order"):
        count_ngrams(["a"], 0)


def test_adjusted_counts_are_continuation_counts():
    nc = count_ngrams(["x a", "y a", "y a", "a"], 2)
    adj = adjusted_counts(nc)
    assert adj[0][("a",)] == 3  # preceded by x, y and <s>: three distinct left contexts (raw count 4)
    assert adj[1][("y", "a")] == 2  # highest order: raw counts
    assert (BOS,) not in adj[0]


def test_discounts_follow_chen_goodman():
    adj = Counter({("w", str(i)): c for i, c in enumerate([1] * 10 + [2] * 4 + [3] * 3 + [4] * 2)})
    d = discounts(adj)
    y = 10 / (10 + 2 * 4)
    assert d.d1 == pytest.approx(1 - 2 * y * 4 / 10)
    assert d.d2 == pytest.approx(2 - 3 * y * 3 / 4)
    assert d.d3 == pytest.approx(3 - 4 * y * 2 / 3)
    assert not d.fallback and d(1) == d.d1 and d(7) == d.d3
    assert discounts(Counter({("a",): 1, ("b",): 1})).fallback  # no count of 2: fallback, still valid
    assert 0 < discounts(Counter({("a",): 1, ("b",): 1})).d1 < 1


def test_every_context_sums_to_one(model3):
    model, discs = model3
    assert not any(d.fallback for d in discs)
    predictable = sorted(model.vocab - {BOS})
    seen = [g for level in model.log_probs[:2] for g in sorted(level) if g[-1] != EOS]
    contexts = [(), (BOS,), ("qzxv",), ("cat", "qzxv"), ("the", "cat")] + random.Random(1).sample(seen, 40)
    for h in contexts:
        total = sum(10 ** model.log10_prob(w, h) for w in predictable)
        assert total == pytest.approx(1.0, abs=1e-9), h


def test_arpa_round_trip_gz_and_unigram_listing(tmp_path, model3):
    model, _ = model3
    path = write_arpa(model, tmp_path / "lm.arpa")
    back = read_arpa(path)
    assert back.order == 3 and back.ngram_counts() == model.ngram_counts()
    for level, level_back in zip(model.log_probs, back.log_probs):
        assert all(abs(level[g] - level_back[g]) < 1e-6 for g in level)
    text = path.read_text()
    assert text.startswith("\\data\\\nngram 1=") and text.rstrip().endswith("\\end\\")
    gz = tmp_path / "lm.arpa.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert read_arpa(gz).ngram_counts() == model.ngram_counts()
    assert set(read_arpa_unigrams(gz)) == model.vocab
    s = "the cat sat on the mat"
    assert back.sentence_log10_prob(s) == pytest.approx(model.sentence_log10_prob(s), abs=1e-4)
    ppl = model.perplexity(["the cat sat", "a qzxv ran"])
    assert ppl["tokens"] == 8 and ppl["oov_rate"] == pytest.approx(1 / 8) and ppl["perplexity"] > 1


def test_kenlm_reads_the_arpa_and_scores_as_we_do(tmp_path, model3):
    from flashlight.lib.text.decoder.kenlm import KenLM
    from flashlight.lib.text.dictionary import create_word_dict

    model, _ = model3
    path = write_arpa(model, tmp_path / "lm.arpa")
    words = sorted(model.vocab - {BOS, EOS, UNK}) + ["qzxv"]
    wd = create_word_dict({**{w: [[w]] for w in words}, UNK: []})
    kenlm = KenLM(str(path), wd)
    for sentence in ("the cat sat on the mat", "red red house qzxv", "a"):
        state, total, history = kenlm.start(False), 0.0, [BOS]
        for w in sentence.split():
            state, score = kenlm.score(state, wd.get_index(w))
            total += score
            history.append(w)
        total += kenlm.finish(state)[1]
        assert total == pytest.approx(model.sentence_log10_prob(sentence), abs=1e-4), sentence


def test_bad_arpa_files_are_named(tmp_path, model3):
    model, _ = model3
    good = write_arpa(model, tmp_path / "lm.arpa").read_text()
    (tmp_path / "trunc.arpa").write_text(good[: len(good) // 2])
    with pytest.raises(ValueError, match="trunc.arpa"):
        read_arpa(tmp_path / "trunc.arpa")
    (tmp_path / "count.arpa").write_text(good.replace("ngram 1=", "ngram 1=9", 1))
    with pytest.raises(ValueError, match="count.arpa: header announces"):
        read_arpa(tmp_path / "count.arpa")
    (tmp_path / "x.arpa").write_text("hello\n")
    with pytest.raises(ValueError, match="x.arpa"):
        read_arpa(tmp_path / "x.arpa")
    with pytest.raises(ValueError, match="x.arpa: neither"):
        lm_kind(tmp_path / "x.arpa")
    with pytest.raises(FileNotFoundError):
        read_arpa(tmp_path / "missing.arpa")


def test_install_lm_decompresses_and_keeps_kenlm_binaries(tmp_path, model3):
    model, _ = model3
    arpa = write_arpa(model, tmp_path / "src" / "lm.arpa")
    gz = tmp_path / "src" / "4-gram.arpa.gz"
    gz.write_bytes(gzip.compress(arpa.read_bytes()))
    assert lm_kind(gz) == "arpa.gz" and lm_kind(arpa) == "arpa"
    out = install_lm(gz, tmp_path / "out")
    assert out.name == "lm.arpa" and out.read_bytes() == arpa.read_bytes()
    binary = tmp_path / "src" / "lm.kenlm"
    binary.write_bytes(b"mmap lm http://kheafield.com/code format version 5\n\0rest")
    assert lm_kind(binary) == "kenlm" and install_lm(binary, tmp_path / "out").name == "lm.bin"


def test_lexicon_spells_words_in_the_char_vocab(tmp_path):
    lex, rejected = build_lexicon(["the", "DON'T", "<s>", "</s>", "<unk>", "naïve", "3d", "x-ray", "the"], CharVocab())
    assert lex == {"the": ["t", "h", "e"], "DON'T": ["d", "o", "n", "'", "t"], "naïve": list("naive")}
    assert rejected == ["3d", "x-ray"]  # a digit; a hyphen becomes a space: not one word
    path = write_lexicon(lex, tmp_path / "lexicon.txt")
    assert path.read_text().splitlines()[0] == "DON'T\td o n ' t"
    assert read_lexicon(path) == lex
    with pytest.raises(ValueError, match="empty lexicon"):
        write_lexicon({}, tmp_path / "none.txt")


def _manifests(root, train, dev):
    write_jsonl(
        root / "train.jsonl",
        [{"audio_filepath": f"{i}.flac", "duration": 1.0, "text": t, "utt_id": f"t{i}"} for i, t in enumerate(train)],
    )
    write_jsonl(
        root / "dev.jsonl",
        [{"audio_filepath": f"{i}.flac", "duration": 1.0, "text": t, "utt_id": f"d{i}"} for i, t in enumerate(dev)],
    )
    CharVocab().save(root / "chars.json")


def test_lm_stage_builds_from_train_or_text_or_brings_an_arpa(tmp_path):
    data = tmp_path / "data"
    _manifests(data, _corpus(200), ["the cat sat", "a zebra ran"])
    rep = lm_task.run({"order": 3}, data, data / "chars.json", tmp_path / "lm")
    assert rep["order"] == 3 and rep["sentences"] == 200 and len(rep["ngrams"]) == 3
    assert (tmp_path / "lm" / "lm.arpa").is_file() and rep["lm_file"] == "lm.arpa"
    assert set(read_lexicon(tmp_path / "lm" / "lexicon.txt")) == set(WORDS)
    assert rep["dev"]["oov_rate"] == pytest.approx(1 / 6, abs=1e-5) and rep["dev"]["perplexity"] > 1
    json.dumps(rep)

    text = tmp_path / "corpus.txt"
    text.write_text("The Cat, sat!\nthe dog ran\n\n")
    rep = lm_task.run({"order": 2, "text": str(text)}, data, data / "chars.json", tmp_path / "lm2")
    assert rep["sentences"] == 2 and set(read_lexicon(tmp_path / "lm2" / "lexicon.txt")) == {
        "the",
        "cat",
        "sat",
        "dog",
        "ran",
    }
    upper, _ = estimate_kneser_ney(count_ngrams(["THE CAT SAT", "THE DOG RAN"], 2))  # like the official LMs
    gz = tmp_path / "upper.arpa.gz"
    gz.write_bytes(gzip.compress(write_arpa(upper, tmp_path / "upper.arpa").read_bytes()))
    rep = lm_task.run({"arpa": str(gz)}, data, data / "chars.json", tmp_path / "lm3")
    assert rep["lm_file"] == "lm.arpa" and read_lexicon(tmp_path / "lm3" / "lexicon.txt")["CAT"] == ["c", "a", "t"]
    assert rep["dev"]["oov_rate"] == pytest.approx(2 / 6, abs=1e-5) and "perplexity" not in rep["dev"]  # "a", "zebra"


def test_lm_stage_errors_name_the_problem(tmp_path):
    data = tmp_path / "data"
    _manifests(data, ["a b"], ["a"])
    with pytest.raises(ValueError, match="colour"):
        lm_task.run({"colour": 1}, data, data / "chars.json", tmp_path / "lm")
    with pytest.raises(ValueError, match="lm.order"):
        lm_task.run({"order": 0}, data, data / "chars.json", tmp_path / "lm")
    with pytest.raises(FileNotFoundError, match="lm.text"):
        lm_task.run({"text": str(tmp_path / "nope.txt")}, data, data / "chars.json", tmp_path / "lm")
    with pytest.raises(FileNotFoundError, match="'test'"):
        lm_task.run({"eval_splits": ["test"]}, data, data / "chars.json", tmp_path / "lm")
    binary = tmp_path / "lm.bin"
    binary.write_bytes(b"mmap lm http://kheafield.com/code\0")
    with pytest.raises(ValueError, match="lm.vocabulary"):
        lm_task.run({"arpa": str(binary)}, data, data / "chars.json", tmp_path / "lm")


# ---------------------------------------------------------------- official LibriSpeech LM files (download stage)


@pytest.fixture
def lm_mirror(tmp_path, monkeypatch):
    """An openslr-like mirror on disk: 11/<LM files> and 12/dev-clean.tar.gz (accepted as official)."""
    import dataclasses

    from asr_core.data.download import md5_file
    from asr_core.data.sources import librispeech as ls
    from asr_core.testing.librispeech import make_librispeech_tarball

    root = tmp_path / "mirror"
    model, _ = estimate_kneser_ney(count_ngrams(["HELLO WORLD", "HELLO THERE"], 2))
    arpa = write_arpa(model, tmp_path / "src.arpa")
    (root / "11").mkdir(parents=True)
    (root / "11" / "4-gram.arpa.gz").write_bytes(gzip.compress(arpa.read_bytes()))
    (root / "11" / "librispeech-lexicon.txt").write_text("HELLO HH AH0 L OW1\nWORLD W ER1 L D\n")
    fake = make_librispeech_tarball(root / "12" / "dev-clean.tar.gz", "dev-clean", seed=1)
    monkeypatch.setitem(ls.SUBSETS, "dev-clean", dataclasses.replace(ls.SUBSETS["dev-clean"], md5=fake.md5))
    md5 = {n: md5_file(root / "11" / n) for n in ("4-gram.arpa.gz", "librispeech-lexicon.txt")}
    return root, md5


def test_librispeech_lm_source_fetches_verified_lm_files_and_audio(tmp_path, lm_mirror):
    from asr_core.data.download import ChecksumError
    from asr_core.data.sources import fetch_source
    from asr_core.data.sources.librispeech_lm import (
        LibriSpeechLMConfig,
        fetch_librispeech_lm,
    )
    from asr_core.testing.http_server import FileServer

    root, md5 = lm_mirror
    audio = {"splits": {"dev": ["dev-clean"]}, "cache_dir": str(tmp_path / "cache")}
    with pytest.raises(ValueError, match="no md5 for"):
        LibriSpeechLMConfig(librispeech=audio)
    with FileServer(root) as srv:
        opts = {
            "md5": md5,
            "librispeech": {**audio, "mirror": srv.url()},
            "mirror": srv.url(),
            "cache_dir": str(tmp_path / "cache"),
            "retries": 1,
            "backoff": 0.01,
            "timeout": 5,
        }
        items = fetch_source("librispeech_lm", opts, tmp_path / "raw", progress=False)
        assert items and {it.split for it in items} == {"dev"}
        placed = tmp_path / "raw" / "librispeech_lm"
        assert (placed / "4-gram.arpa.gz").read_bytes() == (root / "11" / "4-gram.arpa.gz").read_bytes()
        assert (placed / "librispeech-lexicon.txt").is_file()
        n_requests = len(srv.requests)
        fetch_source("librispeech_lm", opts, tmp_path / "raw", progress=False)
        assert len(srv.requests) == n_requests  # verified cache: nothing fetched twice

        bad = {**opts, "md5": {**md5, "4-gram.arpa.gz": "0" * 32}, "cache_dir": str(tmp_path / "cache2")}
        with pytest.raises(ChecksumError, match="4-gram.arpa.gz"):
            fetch_librispeech_lm(LibriSpeechLMConfig.from_dict(bad), tmp_path / "raw2", progress=False)
        assert not (tmp_path / "cache2" / "4-gram.arpa.gz").exists()

        blob = (root / "11" / "4-gram.arpa.gz").read_bytes()  # a truncated file, no md5: the gzip check catches it
        (root / "11" / "4-gram.arpa.gz").write_bytes(blob[: len(blob) // 2])
        unverified = {**opts, "md5": {}, "allow_unverified": True, "cache_dir": str(tmp_path / "cache3")}
        with pytest.raises(ValueError, match="corrupt or truncated gzip"):
            fetch_librispeech_lm(LibriSpeechLMConfig.from_dict(unverified), tmp_path / "raw3", progress=False)

    data = tmp_path / "data"  # the lm stage then brings the official-style LM in
    _manifests(data, ["hello world"], ["hello there world"])
    rep = lm_task.run({"arpa": str(placed / "4-gram.arpa.gz")}, data, data / "chars.json", tmp_path / "lm")
    assert rep["lexicon_words"] == 3 and rep["dev"]["oov_rate"] == 0.0
    with pytest.raises(ValueError, match="unknown file"):
        LibriSpeechLMConfig(files=["5-gram.arpa.gz"], allow_unverified=True)
