"""wav2vec 2.0 recipes through the train stage: pre-training on unlabelled manifests of the synthetic
corpus, then CTC fine-tuning from its checkpoint; the fine-tuned model.pt in evaluate/transcribe paths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from asr_core.io import write_jsonl
from asr_core.models.artifact import load_model
from asr_core.models.wav2vec2 import (
    Wav2Vec2ForPreTraining,
    WaveformFeatures,
    utterance_generators,
)
from asr_core.train.checkpoint import load_checkpoint
from asr_core.train.precision import resolve_precision
from asr_core.train.wav2vec2_recipe import (
    PRETRAIN_FORMAT,
    Wav2Vec2CTCRecipe,
    Wav2Vec2RecipeConfig,
    load_encoder_weights,
)
from tests import REPO


def _build_corpus(root: Path) -> Path:
    """The synthetic espeak corpus (16 train, 4 dev utterances) at 16 kHz, with an unlabelled train list."""
    from asr_core.data.audio import resample
    from asr_core.data.synth import SynthConfig, build_synthetic_corpus

    raw = root / "raw"
    items = build_synthetic_corpus(
        SynthConfig(train=16, dev=4, test=0, test_unseen_voice=0, workers=1), raw, progress=False
    )
    rows: dict[str, list] = {"train": [], "dev": []}
    for it in items:
        x, sr = sf.read(raw / it.audio, dtype="float32")
        y = resample(x, sr, 16000)
        rel = f"audio/{it.utt_id}.flac"
        (root / "audio").mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, y, 16000)
        rows[it.split].append(
            {"audio_filepath": rel, "duration": round(len(y) / 16000, 4), "text": it.text, "utt_id": it.utt_id}
        )
    for split, r in rows.items():
        write_jsonl(root / f"{split}.jsonl", r)
    write_jsonl(root / "unlabelled.jsonl", [{k: v for k, v in r.items() if k != "text"} for r in rows["train"]])
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return _build_corpus(tmp_path_factory.mktemp("w2v_corpus"))


def _profile(name: str, tmp_path: Path, corpus: Path, steps: int, **loop) -> Path:
    """The real profile with tiny overrides: temp paths, a few steps, in-process Ray."""
    section = yaml.safe_load((REPO / "params" / "profiles" / f"{name}.yaml").read_text())["train"]
    section["data"].update(
        dev_manifest=str(corpus / "dev.jsonl"), batch_size=4, max_batch_seconds=None, num_workers=0, vocab=None
    )
    section["loop"].update(max_steps=steps, max_minutes=None, log_every=1, ckpt_every=steps, **loop)
    section["ray"].update(num_workers=0, torch_threads=1)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"train": section}))
    return path


def _stage(params: Path, out: Path, report: Path) -> dict:
    from tasks import train as stage

    stage.main(["--params", str(params), "--out", str(out), "--report", str(report)])
    return json.loads(report.read_text())


@torch.no_grad()
def _dev_contrastive(model: Wav2Vec2ForPreTraining, corpus: Path) -> float:
    """Mean contrastive loss per masked frame on the dev split, with fixed draws."""
    from asr_core.data.collate import collate_batch
    from asr_core.data.dataset import AudioDataset, Manifest

    ds = AudioDataset(Manifest.load(corpus / "dev.jsonl"), lambda t: [])
    b = collate_batch([ds[i] for i in range(len(ds))])
    x, lens = WaveformFeatures()(b["waves"], b["wave_lens"])
    terms = model.eval()(x, lens, utterance_generators(list(range(len(lens))), "cpu"))
    return float(terms["contrastive"].sum() / terms["num_targets"].sum())


def test_pretrain_then_finetune_through_the_train_stage(tmp_path, corpus):
    torch.set_num_threads(1)
    out = tmp_path / "models"
    # -- pre-training on a manifest without transcripts, the profile's precision (auto) through the engine
    pre = _profile("wav2vec2_pretrain", tmp_path, corpus, steps=24, eval_every=12)
    section = yaml.safe_load(pre.read_text())
    section["train"]["data"]["train_manifest"] = str(corpus / "unlabelled.jsonl")
    section["train"]["optim"]["schedule"] = {"name": "polynomial", "warmup_steps": 4}
    pre.write_text(yaml.safe_dump(section))
    report = _stage(pre, out, tmp_path / "pre.json")
    assert report["steps"] == 24 and report["best_step"] in (12, 24)
    obj = load_checkpoint(out / "wav2vec2_pretrain" / "model.pt")
    assert obj["format"] == PRETRAIN_FORMAT and obj["family"] == "wav2vec2_pretrain"
    ck = load_checkpoint(out / "wav2vec2_pretrain" / "checkpoints" / "ckpt-00000024.pt")
    assert ck["recipe"]["num_updates"] == 24 and ck["precision"]["precision"] == resolve_precision("auto", "cpu")

    from asr_core.models.wav2vec2 import Wav2Vec2Config

    cfg = Wav2Vec2Config.from_dict(obj["model_config"])
    torch.manual_seed(section["train"]["seed"])  # the recipe's initial weights
    initial = Wav2Vec2ForPreTraining(cfg)
    trained = Wav2Vec2ForPreTraining(cfg)
    trained.load_state_dict(obj["model"])
    assert trained.quantizer.curr_temp == cfg.latent_temp[0]  # (annealing is per update in training)
    before, after = _dev_contrastive(initial, corpus), _dev_contrastive(trained, corpus)
    assert after < before - 0.05, (before, after)

    # -- fine-tuning from it: CTC head, letters vocabulary, frozen feature encoder, encoder frozen at first
    ft = _profile("wav2vec2", tmp_path, corpus, steps=8, eval_every=8)
    section = yaml.safe_load(ft.read_text())
    section["train"]["data"]["train_manifest"] = str(corpus / "train.jsonl")
    section["train"]["model"].update(
        init_from=str(out / "wav2vec2_pretrain" / "model.pt"), freeze_encoder_updates=4, freeze_feature_encoder=True
    )
    section["train"]["loop"]["precision"] = "fp32"
    ft.write_text(yaml.safe_dump(section))
    report = _stage(ft, out, tmp_path / "ft.json")
    assert report["steps"] == 8 and report["final_dev_wer"] is not None

    model, features, vocab = load_model(out / "wav2vec2_tiny" / "model.pt")
    assert isinstance(features, WaveformFeatures) and vocab.num_outputs == 29
    final = load_checkpoint(out / "wav2vec2_tiny" / "final.pt")["model"]
    for k, v in obj["model"].items():  # the feature encoder stayed as pre-trained
        if k.startswith("encoder.feature_extractor."):
            assert torch.equal(final[k], v), k
    from asr_core.decoding.infer import transcribe_files, transcribe_manifest

    got, skipped = transcribe_manifest(model, features, vocab, corpus / "dev.jsonl", num_workers=0)
    assert len(got) == 4 and not skipped and all(isinstance(t.hyp, str) for t in got)
    wav = corpus / json.loads((corpus / "dev.jsonl").read_text().splitlines()[0])["audio_filepath"]
    assert transcribe_files(model, features, vocab, [wav]) == [got[0].hyp]

    # -- the export stage: waveform in, ONNX and OpenVINO within the fp32 parity gate on padded batches
    from tasks import export

    rep = export.run(
        {
            "manifest_dir": str(corpus),
            "split": "dev",
            "reduced_precision": [],
            "num_workers": 0,
            "threads": 1,
            "batch_seconds": 30.0,
        },
        out / "wav2vec2_tiny" / "model.pt",
        tmp_path / "exp",
    )
    assert rep["passed"] and rep["utterances"] == 4, rep
    assert rep["backends"]["onnxruntime_fp32"]["max_abs_diff"] < 1e-3
    assert (tmp_path / "exp" / "openvino" / "model.xml").is_file()

    # -- benchmark cells for it (waveform batches through every CPU runner) and its training throughput
    from tasks import benchmark

    section = {
        "devices": ["cpu"],
        "threads": 1,
        "cpu_runners": ["torch_fp32", "onnxruntime_fp32", "openvino_fp32"],
        "grid": {
            "batch_sizes": [2],
            "clip_seconds": [1.0],
            "warmup": 1,
            "iterations": 1,
            "min_iterations": 1,
            "max_cell_seconds": None,
        },
        "audio_manifest": str(corpus / "dev.jsonl"),
        "wer": {"manifest_dir": str(corpus), "split": "dev", "max_utterances": 4, "num_workers": 0},
        "train_throughput": {
            "enabled": True,
            "precisions": ["fp32"],
            "batch_size": 2,
            "clip_seconds": 1.0,
            "warmup": 0,
            "steps": 1,
        },
    }
    bench = benchmark.run(
        section,
        model_path=str(out / "wav2vec2_tiny" / "model.pt"),
        exports=str(tmp_path / "exp"),
        out_dir=tmp_path / "bench",
        log=lambda s: None,
    )
    assert set(bench["cells"]) == {f"cpu/{r}/bs2/1s" for r in section["cpu_runners"]}
    assert bench["wer"]["cpu/onnxruntime_fp32"] == bench["wer"]["cpu/torch_fp32"]
    assert bench["train_throughput"]["cpu/fp32"]["audio_s_per_s"] > 0


def test_encoder_freeze_and_init_checks(tmp_path, corpus):
    torch.set_num_threads(1)
    params = {
        "model": {"family": "wav2vec2", "preset": "tiny", "freeze_encoder_updates": 2},
        "data": {
            "train_manifest": str(corpus / "train.jsonl"),
            "dev_manifest": None,
            "vocab": None,
            "batch_size": 2,
            "max_batch_seconds": None,
            "num_workers": 0,
        },
        "optim": {"schedule": {"name": "tri_stage", "warmup_ratio": 0.1, "hold_ratio": 0.4}},
    }
    recipe = Wav2Vec2CTCRecipe(Wav2Vec2RecipeConfig.from_dict(params), max_steps=10, seed=0)
    assert not any(p.requires_grad for p in recipe.model.encoder.feature_extractor.parameters())
    batch = next(iter(recipe.train_loader))
    loss, n = recipe.loss(recipe.model, batch)
    loss.backward()
    assert batch["feats"].size(0) == 2 and n == int(batch["token_lens"].sum())  # weighted per target token
    assert recipe.model.decoder.layers[0].weight.grad is not None
    assert all(p.grad is None for p in recipe.model.encoder.parameters())  # frozen for the first 2 updates
    recipe.schedule.apply(recipe.optimizer, 1)  # the engine, before update 2: the next forward is update 2
    recipe.model.zero_grad()
    recipe.loss(recipe.model, batch)[0].backward()
    assert recipe.model.encoder.transformer.layers[0].fc1.weight.grad is not None
    assert recipe.state_dict()["num_updates"] == 2

    with pytest.raises(ValueError, match="DDP"):
        Wav2Vec2CTCRecipe(Wav2Vec2RecipeConfig.from_dict(params), max_steps=10, world_size=2)
    with pytest.raises(ValueError, match="unknown key"):
        Wav2Vec2RecipeConfig.from_dict({**params, "model": {"family": "wav2vec2", "freeze": 1}})
    # a pre-trained checkpoint with another architecture (here the Hourglass plan) is refused, naming the field
    other = Wav2Vec2ForPreTraining(recipe.model_cfg.replace(hourglass="[1, (2, 2), 1]"))
    torch.save(
        {
            "format": PRETRAIN_FORMAT,
            "family": "wav2vec2_pretrain",
            "model_config": other.cfg.to_dict(),
            "model": other.state_dict(),
        },
        tmp_path / "pre.pt",
    )
    with pytest.raises(ValueError, match="hourglass"):
        load_encoder_weights(tmp_path / "pre.pt", recipe.model_cfg)
    assert np.isfinite(float(loss.detach()))


def test_pretrain_recipe_anneals_per_update_and_resumes_the_count(corpus):
    from asr_core.train.wav2vec2_recipe import Wav2Vec2PretrainRecipe

    params = {
        "model": {"family": "wav2vec2_pretrain", "preset": "tiny"},
        "data": {
            "train_manifest": str(corpus / "unlabelled.jsonl"),
            "dev_manifest": str(corpus / "dev.jsonl"),
            "vocab": None,
            "batch_size": 2,
            "max_batch_seconds": None,
            "num_workers": 0,
        },
        "optim": {"schedule": {"name": "polynomial", "warmup_steps": 1}},
    }
    recipe = Wav2Vec2PretrainRecipe(Wav2Vec2RecipeConfig.from_dict(params), max_steps=5, seed=0)
    max_t, min_t, decay = recipe.model_cfg.latent_temp
    recipe.schedule.apply(recipe.optimizer, 0)  # the engine, before update 1
    assert recipe.model.quantizer.curr_temp == max(max_t * decay, min_t)
    recipe.load_state_dict({"num_updates": 10**6})  # a resumed run continues the annealing
    assert recipe.model.quantizer.curr_temp == min_t and recipe.state_dict()["num_updates"] == 10**6
    loss, n = recipe.loss(recipe.model, next(iter(recipe.train_loader)))
    assert n > 0 and torch.isfinite(loss)
    with pytest.raises(ValueError, match="wav2vec2_pretrain"):
        Wav2Vec2PretrainRecipe(Wav2Vec2RecipeConfig.from_dict({**params, "model": {"family": "wav2vec2"}}), max_steps=5)


def test_pretraining_goes_below_chance_on_a_small_corpus(corpus):
    """The contrastive task is learnt, not only flattened to chance: with the pre-training profile's model
    overrides and lr, the dev contrastive loss (fixed draws) ends clearly below ln(1 + K), K negatives."""
    import math

    from asr_core.data.collate import collate_batch
    from asr_core.data.dataset import AudioDataset, Manifest
    from asr_core.models.wav2vec2 import pretraining_loss
    from asr_core.models.wav2vec2.config import PRESETS

    torch.set_num_threads(2)
    section = yaml.safe_load((REPO / "params" / "profiles" / "wav2vec2_pretrain.yaml").read_text())["train"]
    cfg = PRESETS[section["model"]["preset"]](**section["model"]["overrides"])
    o = section["optim"]
    torch.manual_seed(0)
    model = Wav2Vec2ForPreTraining(cfg)
    opt = torch.optim.AdamW(
        model.parameters(), lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"], weight_decay=o["weight_decay"]
    )
    ds = AudioDataset(Manifest.load(corpus / "unlabelled.jsonl", require_text=False), lambda t: [])
    batches = []
    for i in range(0, len(ds), 8):
        b = collate_batch([ds[j] for j in range(i, min(i + 8, len(ds)))])
        batches.append(WaveformFeatures()(b["waves"], b["wave_lens"]))
    chance = math.log(1 + cfg.num_negatives)
    before = _dev_contrastive(model, corpus)
    steps = 100
    for step in range(1, steps + 1):
        model.train().set_num_updates(step)
        for g in opt.param_groups:  # linear warm-up over 30 updates
            g["lr"] = o["lr"] * min(1.0, step / 30)
        x, lens = batches[step % len(batches)]
        seeds = [step * 100 + i for i in range(len(lens))]  # fresh masks, negatives and noise every update
        loss, _ = pretraining_loss(
            model(x, lens, utterance_generators(seeds, "cpu")), o["diversity_weight"], o["feature_pen_weight"]
        )
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), section["loop"]["clip_norm"])
        opt.step()
    after = _dev_contrastive(model, corpus)
    assert before > chance - 0.05, (before, chance)  # an untrained model is at or above chance
    assert after < chance - 0.1, (before, after, chance)
