"""CTC beam search with an n-gram LM: fixed log-probs with known best paths, dev-only tuning, evaluate/transcribe."""

from __future__ import annotations

import csv
import json

import mlflow
import pytest
import torch

from asr_core.decoding import beam as beam_mod
from asr_core.decoding.beam import BeamConfig, LexiconBeamDecoder, tune_weights
from asr_core.features import FilterbankConfig
from asr_core.io import write_jsonl
from asr_core.lm import (
    build_lexicon,
    count_ngrams,
    estimate_kneser_ney,
    write_arpa,
    write_lexicon,
)
from asr_core.models import build_model, model_config
from asr_core.models.artifact import save_model
from asr_core.models.ctc import greedy_decode
from asr_core.objectives.ctc.beam import BeamEvalSettings
from asr_core.testing import write_audio
from asr_core.text import CharVocab
from tasks import evaluate as evaluate_task
from tasks import transcribe as transcribe_task

V = CharVocab()
LM_TEXT = ["the cat sat"] * 20 + ["the cat ran", "a dog sat", "the dog ran", "a cot"]


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("lm")
    model, _ = estimate_kneser_ney(count_ngrams(LM_TEXT, 3))
    write_arpa(model, d / "lm.arpa")
    lexicon, _ = build_lexicon(sorted(model.vocab), V)
    write_lexicon(lexicon, d / "lexicon.txt")
    return d


@pytest.fixture(scope="module")
def decoder(lm_dir):
    return LexiconBeamDecoder(V, lm_dir / "lexicon.txt", lm_dir / "lm.arpa", BeamConfig(beam_size=16, lm_weight=2.0))


def frames(*spec) -> torch.Tensor:
    """One (T, V) log-prob frame per item: a char (p 0.9), "-" for blank, or {char: p} (rest spread evenly)."""
    rows = []
    for item in spec:
        probs = (
            {V.blank: 0.9}
            if item == "-"
            else (
                {V.encode(item)[0]: 0.9}
                if isinstance(item, str)
                else {V.blank if c == "-" else V.encode(c)[0]: p for c, p in item.items()}
            )
        )
        rest = (1 - sum(probs.values())) / (V.num_outputs - len(probs))
        row = torch.full((V.num_outputs,), rest)
        for i, p in probs.items():
            row[i] = p
        rows.append(row.log())
    return torch.stack(rows)


def spell(text: str):
    out = []
    for c in text:
        out += [c, "-"]
    return out


def greedy(lp: torch.Tensor) -> str:
    return V.decode(greedy_decode(lp[None], torch.tensor([lp.size(0)]))[0])


def test_lm_overrides_a_close_acoustic_call(lm_dir, decoder):
    # "the c?t": 'o' 0.5 vs 'a' 0.4 -> greedy says "cot"; the LM has seen "the cat" 20 times, "the cot" never
    lp = frames(*spell("the c"), {"o": 0.5, "a": 0.4}, "-", *spell("t"))
    assert greedy(lp) == "the cot"
    assert decoder.decode_one(lp) == "the cat"
    no_lm = LexiconBeamDecoder(V, lm_dir / "lexicon.txt", None, BeamConfig(beam_size=16))
    assert no_lm.decode_one(lp) == "the cot"  # lexicon only: the acoustically best word


def test_lexicon_repairs_a_non_word(decoder):
    # "cxt" is no word: with 'a' the runner-up of that frame, the best in-lexicon path is "cat"
    lp = frames(*spell("the c"), {"x": 0.6, "a": 0.3}, "-", *spell("t sat"))
    assert greedy(lp) == "the cxt sat"
    assert decoder.decode_one(lp) == "the cat sat"


def test_batch_lengths_and_empty_inputs(decoder):
    a = frames(*spell("a dog sat"))
    b = frames(*spell("the cat"))
    batch = torch.full((2, a.size(0) + 5, V.num_outputs), -30.0)
    batch[..., V.encode("z")[0]] = 0.0  # padding says "z" loudly: must be ignored
    batch[0, : a.size(0)], batch[1, : b.size(0)] = a, b
    assert decoder.decode(batch, torch.tensor([a.size(0), b.size(0)])) == ["a dog sat", "the cat"]
    assert decoder.decode_one(torch.zeros(0, V.num_outputs)) == ""
    assert decoder.decode_one(frames("-", "-", "-")) == ""
    with pytest.raises(ValueError, match=r"\(T, 29\)"):
        decoder.decode_one(torch.zeros(3, 5))


def test_bad_lexicon_and_config_are_named(tmp_path, lm_dir):
    (tmp_path / "lex.txt").write_text("cat\tc a t\nnaïve\tn a ï v e\n")
    with pytest.raises(ValueError, match="lex.txt: word 'naïve'"):
        LexiconBeamDecoder(V, tmp_path / "lex.txt", lm_dir / "lm.arpa")
    with pytest.raises(FileNotFoundError, match="language model"):
        LexiconBeamDecoder(V, lm_dir / "lexicon.txt", tmp_path / "none.arpa")
    with pytest.raises(ValueError, match="beam_size"):
        BeamConfig(beam_size=0)
    with pytest.raises(ValueError, match="colour"):
        BeamConfig.from_dict({"colour": 1})


def test_tune_weights_picks_the_grid_best(decoder):
    lps = [frames(*spell("the c"), {"o": 0.5, "a": 0.4}, "-", *spell("t")), frames(*spell("a dog sat"))]
    res = tune_weights(decoder, lps, ["the cat", "a dog sat"], [0.0, 2.0], [0.0])
    assert [g["lm_weight"] for g in res["grid"]] == [0.0, 2.0]
    assert res["grid"][0]["wer"] == pytest.approx(0.2) and res["grid"][1]["wer"] == 0.0
    assert (res["lm_weight"], res["word_score"], res["wer"]) == (2.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="one reference per utterance"):
        tune_weights(decoder, lps, ["x"], [1.0], [0.0])


def test_tuning_on_a_test_split_is_refused():
    with pytest.raises(ValueError, match="never on a test split"):
        BeamEvalSettings(tune_split="test_unseen_voice")
    with pytest.raises(ValueError, match="colour"):
        BeamEvalSettings.from_dict({"colour": 1})
    assert BeamEvalSettings(lm_weights=1.5).lm_weights == [1.5]


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory, lm_dir):
    root = tmp_path_factory.mktemp("beam_eval")
    torch.manual_seed(0)
    cfg = model_config("quartznet", "tiny")
    model = build_model("quartznet", "tiny", V.num_outputs)
    model_path = save_model(
        root / "model.pt",
        kind="ctc",
        frontend="filterbank",
        family="quartznet",
        model_config=cfg.to_dict(),
        num_outputs=V.num_outputs,
        features=FilterbankConfig().to_dict(),
        vocab=V.to_dict(),
        state_dict=model.state_dict(),
        step=0,
    )
    for split, texts in {"dev": ["the cat sat", "a dog sat", "the dog ran"], "test": ["a cot", "the cat ran"]}.items():
        rows = []
        for i, t in enumerate(texts):
            write_audio(root / "audio" / f"{split}{i}.flac", 0.6 + 0.1 * i, 16000, seed=i)
            rows.append(
                {
                    "audio_filepath": f"audio/{split}{i}.flac",
                    "duration": 0.6 + 0.1 * i,
                    "text": t,
                    "utt_id": f"{split}{i}",
                    "speaker": "s",
                }
            )
        write_jsonl(root / f"{split}.jsonl", rows)
    return root, model_path


def test_evaluate_reports_greedy_and_beam_and_tunes_on_dev_only(tiny_setup, lm_dir, monkeypatch, tmp_path):
    root, model_path = tiny_setup
    seen_refs = []
    real = beam_mod.tune_weights

    def spy(decoder, log_probs, refs, *a, **kw):
        seen_refs.extend(refs)
        return real(decoder, log_probs, refs, *a, **kw)

    monkeypatch.setattr(beam_mod, "tune_weights", spy)
    section = {
        "model": str(model_path),
        "splits": ["test", "dev"],
        "manifest_dir": str(root),
        "num_workers": 0,
        "lm": {
            "dir": str(lm_dir),
            "beam_size": 8,
            "tune_utterances": 2,
            "lm_weights": [0.5, 1.0],
            "word_scores": [0.0, 1.0],
        },
    }
    params = tmp_path / "evaluate.yaml"
    params.write_text(json.dumps({"evaluate": section}))  # JSON is YAML
    report = evaluate_task.main(
        ["--params", str(params), "--out", str(tmp_path / "eval"), "--report", str(tmp_path / "evaluate.json")]
    )
    assert seen_refs == ["the cat sat", "a dog sat"]  # the first 2 dev utterances, nothing from test
    b = report["beam"]
    assert b["tune_split"] == "dev" and b["tune_utterances"] == 2 and len(b["grid"]) == 4
    assert (b["lm_weight"], b["word_score"]) in {(g["lm_weight"], g["word_score"]) for g in b["grid"]}
    for split, n in (("dev", 3), ("test", 2)):
        assert {"wer", "cer"} <= set(report[split]) and {"wer", "cer"} <= set(report[split]["beam"])
        with open(tmp_path / "eval" / f"{split}.beam.tsv") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        assert len(rows) == n and all(
            set(r["hypothesis"].split()) <= {"the", "a", "cat", "cot", "dog", "sat", "ran"} for r in rows
        )
    run = mlflow.search_runs(
        search_all_experiments=True,
        filter_string="tags.stage = 'evaluate'",
        order_by=["start_time DESC"],
        max_results=1,
    ).iloc[0]
    assert float(run["params.beam.chosen.lm_weight"]) == b["lm_weight"]
    assert run["metrics.test.beam.wer"] == pytest.approx(report["test"]["beam"]["wer"])


def test_transcribe_with_lm(tiny_setup, lm_dir, tmp_path, capsys):
    root, model_path = tiny_setup
    report = tmp_path / "evaluate.json"
    report.write_text(json.dumps({"beam": {"lm_weight": 1.0, "word_score": 0.5}}))
    audio = str(root / "audio" / "dev0.flac")
    texts = transcribe_task.main(
        ["--model", str(model_path), "--lm", str(lm_dir), "--weights-from", str(report), "--beam-size", "8", audio]
    )
    assert len(texts) == 1 and set(texts[0].split()) <= {"the", "a", "cat", "cot", "dog", "sat", "ran"}
    assert capsys.readouterr().out.startswith(f"{audio}\t")
    with pytest.raises(ValueError, match="no 'beam' entry"):
        (tmp_path / "greedy.json").write_text("{}")
        transcribe_task.main(
            [
                "--model",
                str(model_path),
                "--lm",
                str(lm_dir / "lm.arpa"),
                "--weights-from",
                str(tmp_path / "greedy.json"),
                audio,
            ]
        )
