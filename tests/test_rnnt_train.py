"""The transducer through the train stage (Ray local mode): loss falls, model.pt loads, resume."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from asr_core.io.jsonl import read_jsonl
from asr_core.models.artifact import load_model
from asr_core.tokenizer import SentencePieceConfig, train_sentencepiece
from asr_core.train.checkpoint import list_checkpoints
from tests.test_engine import make_corpus

REPO = Path(__file__).resolve().parents[1]


def rnnt_corpus(root: Path, splits=(("train", 6), ("dev", 3))) -> tuple[Path, Path]:
    """A tiny corpus and a sentencepiece model on its train text: (corpus folder, spm.model)."""
    corpus = make_corpus(root, splits=splits)
    texts = [r["text"] for r in read_jsonl(corpus / "train.jsonl")]
    return corpus, train_sentencepiece(texts, root / "spm", SentencePieceConfig(vocab_size=16))


def rnnt_params(tmp_path: Path, corpus: Path, spm: Path, steps: int = 12) -> Path:
    """params/profiles/rnnt.yaml with tiny overrides: the tiny preset, a few steps, temp paths."""
    section = yaml.safe_load((REPO / "params" / "profiles" / "rnnt.yaml").read_text())["train"]
    section["name"] = "rnnt_test"
    section["model"].update(
        preset="tiny",
        overrides={
            "enc_hidden": 32,
            "enc_proj": 32,
            "pred_hidden": 32,
            "pred_proj": 32,
            "joint_dim": 32,
            "embed_dim": 16,
        },
    )
    section["data"].update(
        train_manifest=str(corpus / "train.jsonl"),
        dev_manifest=str(corpus / "dev.jsonl"),
        vocab=str(spm),
        batch_size=6,
        max_batch_seconds=None,
        num_workers=0,
    )
    section["optim"].update(lr=0.01, schedule={"name": "polynomial", "warmup_steps": 1, "final_lr_scale": 0.5})
    section["loop"].update(max_steps=steps, max_minutes=None, eval_every=steps, ckpt_every=steps // 2, log_every=1)
    section["ray"].update(num_workers=0, torch_threads=1)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({"train": section}))
    return path


def test_train_stage_trains_a_transducer(tmp_path):
    from mlflow.tracking import MlflowClient

    from tasks import tracking
    from tasks import train as stage

    corpus, spm = rnnt_corpus(tmp_path / "corpus")
    params = rnnt_params(tmp_path, corpus, spm)
    out, report_path = tmp_path / "models", tmp_path / "train.json"
    stage.main(["--params", str(params), "--out", str(out), "--report", str(report_path)])
    report = json.loads(report_path.read_text())
    assert report["steps"] == 12 and report["best_dev_wer"] is not None

    client = MlflowClient(tracking.tracking_uri())
    exp = client.get_experiment_by_name(tracking.EXPERIMENT)
    run = client.search_runs(
        [exp.experiment_id], "tags.mlflow.runName = 'train'", order_by=["attributes.start_time DESC"], max_results=1
    )[0]
    losses = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "train_loss"), key=lambda m: m.step)]
    assert len(losses) == 12 and losses[-1] < 0.7 * losses[0], losses
    assert run.data.params["train.model.family"] == "rnnt"

    model_dir = out / "rnnt_test"
    assert [s for s, _ in list_checkpoints(model_dir / "checkpoints")] == [6, 12]
    model, features, vocab = load_model(model_dir / "model.pt")
    assert model.kind == "transducer" and vocab.num_outputs == 16 and features.cfg.n_mels == 80
    assert vocab.decode(vocab.encode("abc de")) == "abc de"
