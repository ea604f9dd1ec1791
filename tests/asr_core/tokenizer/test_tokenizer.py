import json
import random

import pytest
import sentencepiece as spm

from asr_core.io import write_jsonl
from asr_core.tokenizer import SentencePieceConfig, train_sentencepiece
from tasks import tokenizer as tokenizer_task

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "seven",
    "old",
    "farmers",
    "sing",
    "slowly",
]


def _texts(n=200, seed=0):
    r = random.Random(seed)
    return [" ".join(r.choice(WORDS) for _ in range(r.randint(3, 9))) for _ in range(n)]


def test_sentencepiece_deterministic_and_blank_zero(tmp_path):
    cfg = SentencePieceConfig(vocab_size=48)
    a = train_sentencepiece(_texts(), tmp_path / "a", cfg)
    b = train_sentencepiece(_texts(), tmp_path / "b", cfg)
    assert a.read_bytes() == b.read_bytes()
    sp = spm.SentencePieceProcessor(model_file=str(a))
    assert sp.get_piece_size() == 48
    assert sp.id_to_piece(0) == "<blank>" and sp.unk_id() == 1
    assert sp.decode(sp.encode("the lazy dog")) == "the lazy dog"


def test_sentencepiece_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match=r"vocab_size=4000.*value <= \d+"):
        train_sentencepiece(_texts(20), tmp_path / "x", SentencePieceConfig(vocab_size=4000, cap_to_corpus=False))
    with pytest.raises(ValueError, match="model_type"):
        SentencePieceConfig(model_type="wordpiece")
    with pytest.raises(ValueError, match="vocab"):
        SentencePieceConfig.from_dict({"vocab": 3})


def test_tokenizer_stage(tmp_path):
    manifest = tmp_path / "train.jsonl"
    write_jsonl(
        manifest, [{"audio_filepath": f"a/{i}.flac", "duration": 1.0, "text": t} for i, t in enumerate(_texts())]
    )
    out = tmp_path / "tok"
    summary = tokenizer_task.run({"sentencepiece": {"vocab_size": 40, "model_type": "unigram"}}, manifest, out)
    assert summary["ctc_outputs"] == 29 and summary["spm_vocab_size"] == 40
    assert json.loads((out / "chars.json").read_text())["blank"] == 28
    assert (out / "spm.model").is_file() and (out / "spm.vocab").is_file()


def test_tokenizer_stage_rejects_out_of_alphabet(tmp_path):
    manifest = tmp_path / "train.jsonl"
    write_jsonl(manifest, [{"audio_filepath": "a.flac", "duration": 1.0, "text": "room 101"}])
    with pytest.raises(ValueError, match="line 1"):
        tokenizer_task.run({}, manifest, tmp_path / "tok")


def test_a_vocabulary_too_large_for_a_small_corpus_is_capped_and_reported(tmp_path):
    """Ten spoken digits support ~90 BPE pieces: the default 256 is capped, not a crash after prepare."""
    digits = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    manifest = tmp_path / "train.jsonl"
    write_jsonl(
        manifest, [{"audio_filepath": f"a/{i}.wav", "duration": 0.4, "text": digits[i % 10]} for i in range(50)]
    )
    summary = tokenizer_task.run({"sentencepiece": {"vocab_size": 256}}, manifest, tmp_path / "tok")
    assert summary["spm_vocab_size_requested"] == 256 and summary["spm_vocab_capped"] is True
    assert 4 <= summary["spm_vocab_size"] < 256
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "tok" / "spm.model"))
    assert sp.get_piece_size() == summary["spm_vocab_size"] and sp.decode(sp.encode("seven")) == "seven"
    with pytest.raises(ValueError, match="vocab_size=256"):
        tokenizer_task.run({"sentencepiece": {"vocab_size": 256, "cap_to_corpus": False}}, manifest, tmp_path / "t2")
