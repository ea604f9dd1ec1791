"""Serving a registered transducer: ``--model models:/<name>@champion`` downloads the version's export
folder (graphs, export.json and the model file it was exported from) and serves it as a local export."""

from __future__ import annotations

import json
import os

import pytest

from tasks import export, registry, serve, tracking
from tests.tasks.serve_client import final_of, run, stream_wav


def test_serve_parse_model_uri():
    assert registry.parse_model_uri("models:/asr-rnnt@champion") == ("asr-rnnt", "champion", None)
    assert registry.parse_model_uri("models:/asr-rnnt/3") == ("asr-rnnt", None, "3")
    for bad in ("models:/", "models:/asr-rnnt", "models:/asr-rnnt@", "models:/a/b/c", "runs:/x/model"):
        with pytest.raises(ValueError, match="expected models:/<name>@<alias>"):
            registry.parse_model_uri(bad)


def test_serve_registered_champion_streams_as_its_export(serve_assets, offline_texts, tmp_path, monkeypatch):
    work = tmp_path / "work"  # a checkout: export.json names the model file relative to it
    work.mkdir()
    monkeypatch.chdir(work)
    model = work / "models" / "rnnt" / "model.pt"
    model.parent.mkdir(parents=True)
    model.write_bytes(serve_assets.transducer.read_bytes())
    section = {"manifest_dir": str(serve_assets.corpus), "split": "dev", "num_workers": 0, "threads": 1}
    out = work / "exports" / "rnnt"
    assert export.run(section, model.relative_to(work), out)["passed"]
    evaluation = work / "evaluate.json"
    evaluation.write_text(json.dumps({"test": {"wer": 0.5}}))
    name = f"serve-registry-{os.getpid()}"
    run_id = tracking.client().create_run(tracking.client().create_experiment(name)).info.run_id
    summary = registry.register(model_name=name, evaluation_path=evaluation, run_id=run_id, export_dir=out)
    assert summary["promoted"]

    # served from another folder, where the checkout's model file is not: the version carries its own
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    lines: list[str] = []
    args = serve.parser().parse_args(["--model", f"models:/{name}@champion", "--registry-cache", str(tmp_path / "c")])
    service = serve.build_service(args, log_fn=lines.append)
    folder = tmp_path / "c" / name / summary["version"]
    assert any(str(folder) in line for line in lines), lines
    assert (folder / "model.pt").read_bytes() == model.read_bytes()
    with serve.running(serve.create_app(service), service.limits) as url:
        messages, _ = run(stream_wav(url, serve_assets.utterances[0]))
        assert final_of(messages)["text"] == offline_texts(serve_assets.transducer, serve_assets.utterances[0])
    service.close()

    for uri, why in (
        (f"models:/{name}@nobody", "not in the registry"),
        ("models:/no-such-model/1", "not in the registry"),
    ):
        with pytest.raises(ValueError, match=why):
            serve.build_service(serve.parser().parse_args(["--model", uri, "--registry-cache", str(tmp_path / "c")]))
