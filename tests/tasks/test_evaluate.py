"""The evaluate stage and the transcribe command on a tiny (untrained) model."""

import csv
import json
import math

import pytest
import torch

from asr_core.decoding import corpus_errors, utterance_errors
from asr_core.features import FilterbankConfig
from asr_core.io import write_jsonl
from asr_core.models import build_model, model_config
from asr_core.models.artifact import save_model
from asr_core.testing import write_audio
from asr_core.text import CharVocab
from tasks import evaluate as evaluate_task
from tasks import transcribe as transcribe_task


def test_error_counts():
    e = utterance_errors("the cat sat", "a cat sat down")
    assert (e.substitutions, e.deletions, e.insertions, e.words) == (1, 0, 1, 3)
    assert utterance_errors("the cat", "").word_errors == 2
    agg = corpus_errors([("the cat sat", "the bat sat"), ("hello world", "hello")])
    assert agg["wer"] == pytest.approx(2 / 5) and agg["utterances"] == 2
    assert math.isnan(corpus_errors([])["wer"])


@pytest.fixture
def tiny_model(tmp_path):
    torch.manual_seed(0)
    vocab = CharVocab()
    cfg = model_config("quartznet", "tiny")
    model = build_model("quartznet", "tiny", vocab.num_outputs)
    path = save_model(
        tmp_path / "model.pt",
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
    return path


def _corpus(root, n=5):
    rows = []
    for i in range(n):
        write_audio(root / "audio" / f"u{i}.flac", 0.5 + 0.2 * i, 16000, seed=i)
        rows.append(
            {
                "audio_filepath": f"audio/u{i}.flac",
                "duration": 0.5 + 0.2 * i,
                "text": f"word {'a' * (i + 1)}",
                "utt_id": f"u{i}",
                "speaker": "s",
            }
        )
    write_jsonl(root / "test.jsonl", rows)
    return rows


def test_evaluate_stage_writes_report_and_tsv(tmp_path, tiny_model):
    rows = _corpus(tmp_path / "data")
    section = {"model": str(tiny_model), "splits": ["test"], "manifest_dir": str(tmp_path / "data"), "num_workers": 0}
    report = evaluate_task.run(section, tmp_path / "eval")
    assert report["test"]["utterances"] == 5 and report["test"]["skipped"] == 0
    assert report["test"]["cer"] >= 0 and report["test"]["words"] == 10
    with open(tmp_path / "eval" / "test.tsv") as f:
        got = list(csv.DictReader(f, delimiter="\t"))
    assert [r["utt_id"] for r in got] == [r["utt_id"] for r in rows]
    assert got[0]["reference"] == "word a"
    json.dumps(report)


def test_evaluate_stage_errors_name_the_problem(tmp_path, tiny_model):
    with pytest.raises(FileNotFoundError, match="evaluate.model"):
        evaluate_task.run({"model": str(tmp_path / "nope.pt"), "splits": ["test"], "manifest_dir": "x"}, tmp_path)
    with pytest.raises(FileNotFoundError, match="'dev'"):
        evaluate_task.run({"model": str(tiny_model), "splits": ["dev"], "manifest_dir": str(tmp_path)}, tmp_path)
    _corpus(tmp_path / "data")  # test present, test_unseen_voice absent: refused before test is decoded
    splits = {"splits": ["test", "test_unseen_voice"], "manifest_dir": str(tmp_path / "data")}
    with pytest.raises(FileNotFoundError, match="evaluate.splits.*'test_unseen_voice'"):
        evaluate_task.run({"model": str(tiny_model), **splits}, tmp_path / "eval2")
    assert not (tmp_path / "eval2" / "test.tsv").exists()
    with pytest.raises(ValueError, match="colour"):
        evaluate_task.run({"model": str(tiny_model), "splits": [], "manifest_dir": ".", "colour": 1}, tmp_path)


def test_transcribe_cli_any_rate_and_channels(tmp_path, tiny_model, capsys):
    a = write_audio(tmp_path / "a.wav", 1.0, 44100, channels=2, seed=1)
    b = write_audio(tmp_path / "b.flac", 0.7, 16000, seed=2)
    texts = transcribe_task.main(["--model", str(tiny_model), str(a), str(b)])
    assert len(texts) == 2 and all(set(t) <= set(CharVocab().symbols) for t in texts)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{a}\t")
    with pytest.raises(SystemExit):
        transcribe_task.main(["--model", str(tiny_model), str(tmp_path / "missing.wav")])
