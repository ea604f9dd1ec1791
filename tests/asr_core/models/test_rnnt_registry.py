"""The MLflow Model Registry for transducers (tasks/registry.py): the export folder with its three graphs
as the version's artifacts, identity = MD5 over the three graphs in a fixed order, the same candidate /
champion rule as a CTC model's single graph."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch


def _export(path: Path, seed: int) -> Path:
    """A tiny transducer's three graphs (+ rnnt_export.json), as the export stage writes them (no IR)."""
    from asr_core.export.rnnt_onnx import export_rnnt
    from asr_core.export.rnnt_runtime import write_meta
    from asr_core.models.rnnt import rnnt_model, rnnt_tiny

    torch.manual_seed(seed)
    model = rnnt_model(
        rnnt_tiny(enc_hidden=16, enc_proj=16, embed_dim=8, pred_hidden=16, pred_proj=16, joint_dim=16, enc_layers=2), 12
    ).eval()
    path.mkdir(parents=True)
    export_rnnt(model, path, feature_dim=80, openvino=False)
    write_meta(model, path)
    (path / "export.json").write_text("{}\n")
    return path


def test_transducer_export_folder_registered_with_champion_rule(tmp_path, monkeypatch):
    import mlflow

    from tasks import registry, tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    evaluation = tmp_path / "evaluate.json"
    folders = [_export(tmp_path / f"exports{i}" / "rnnt_small", seed=i) for i in range(3)]
    assert registry.export_graphs(folders[0]) == [
        folders[0] / g for g in ("encoder.onnx", "predictor.onnx", "joint.onnx")
    ]
    listing = "".join(
        f"{hashlib.md5((folders[0] / g).read_bytes()).hexdigest()}  {g}\n"
        for g in ("encoder.onnx", "predictor.onnx", "joint.onnx")
    )
    assert registry.graphs_md5(registry.export_graphs(folders[0])) == hashlib.md5(listing.encode()).hexdigest()

    results = []
    for folder, wer in zip(folders, (0.5, 0.6, 0.4)):
        evaluation.write_text(json.dumps({"test": {"wer": wer, "beam": {"wer": wer - 0.1}}}))
        run_id = tracking.start_flow_run("register", tags={"stage": "register"})
        results.append(
            registry.register(
                model_name="asr-rnnt-test",
                export_dir=folder,
                evaluation_path=evaluation,
                run_id=run_id,
                tags={"train_name": "rnnt_small", "family": "rnnt"},
            )
        )
    assert [(r["version"], r["promoted"], r["wer_split"], r["reused"]) for r in results] == [
        ("1", True, "test", False),
        ("2", False, "test", False),
        ("3", True, "test", False),
    ]
    # the same three graphs again (a flow re-run whose train/export stages were skipped): no new version
    again = registry.register(
        model_name="asr-rnnt-test",
        export_dir=folders[1],
        evaluation_path=evaluation,
        run_id=tracking.start_flow_run("register", tags={"stage": "register"}),
    )
    assert (again["version"], again["reused"], again["promoted"]) == ("2", True, False)
    c = tracking.client()
    assert len(c.search_model_versions("name = 'asr-rnnt-test'")) == 3
    assert str(c.get_model_version_by_alias("asr-rnnt-test", "champion").version) == "3"
    assert str(c.get_model_version_by_alias("asr-rnnt-test", "candidate").version) == "2"
    v3 = c.get_model_version("asr-rnnt-test", "3")
    assert v3.tags["onnx_md5"] == registry.graphs_md5(registry.export_graphs(folders[2]))
    assert v3.tags["graphs"] == "encoder.onnx,predictor.onnx,joint.onnx" and v3.tags["wer"] == "0.4"

    # the champion's artifacts are the export folder: the streaming runtime runs from the download
    mlflow.set_tracking_uri(tracking.tracking_uri())
    local = Path(mlflow.artifacts.download_artifacts("models:/asr-rnnt-test@champion", dst_path=str(tmp_path / "dl")))
    assert {p.name for p in local.iterdir()} == {
        "encoder.onnx",
        "predictor.onnx",
        "joint.onnx",
        "rnnt_export.json",
        "export.json",
    }
    for g in ("encoder.onnx", "predictor.onnx", "joint.onnx"):
        assert (local / g).read_bytes() == (folders[2] / g).read_bytes()
    from asr_core.export.rnnt_runtime import load_backend

    backend = load_backend(local, "onnxruntime", threads=1)
    g, _ = backend.predict(torch.zeros(1, 1, dtype=torch.long), backend.predictor_state(1))
    assert g.shape[-1] == 16


def test_export_folder_lookup_ctc_first_and_errors(tmp_path):
    from tasks import registry

    d = tmp_path / "x"
    d.mkdir()
    assert registry.export_graphs(d) == []
    (d / "encoder.onnx").write_bytes(b"e")
    (d / "predictor.onnx").write_bytes(b"p")
    assert registry.export_graphs(d) == []  # an incomplete transducer export is no model
    (d / "joint.onnx").write_bytes(b"j")
    assert len(registry.export_graphs(d)) == 3
    (d / "model.onnx").write_bytes(b"m")
    assert registry.export_graphs(d) == [d / "model.onnx"]
    assert registry.graphs_md5([d / "model.onnx"]) == hashlib.md5(b"m").hexdigest()  # CTC identity unchanged
    with pytest.raises(ValueError, match="exactly one of"):
        registry.register(model_name="m", evaluation_path=d / "e.json", run_id="r")
    with pytest.raises(FileNotFoundError, match="run the export stage first"):
        registry.register(model_name="m", export_dir=tmp_path / "none", evaluation_path=d / "e.json", run_id="r")
