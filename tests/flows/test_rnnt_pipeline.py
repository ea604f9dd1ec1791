"""The transducer end to end through the real DVC stages, in a temp copy of the repo (tests/flows/test_flows.py's
fixtures, tiny params): ``dvc repro`` with the rnnt profile written into ``params/train.yaml`` as the README's
"RNN-Transducer" recipe says: train -> evaluate (greedy and beam) -> export (three graphs, parity gate) ->
benchmark (streaming, per backend). Then the ``train-rnnt`` flow with the same settings over every stage of
``flows.stages``: DVC skips them all (the flow's params are exactly the recipe's) and the flow registers the
transducer (``asr-rnnt``: the export folder, champion)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml

from tests.flows.support import TINY_RNNT as TINY
from tests.flows.support import _runs, _set

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

GRAPHS = ("encoder.onnx", "predictor.onnx", "joint.onnx")


def test_rnnt_dvc_repro_end_to_end_then_flow_registers(repo):
    from flows.train_rnnt import train_rnnt
    from tasks import registry

    # a few utterances per stage, every backend benchmarked once (both paths read these files)
    _set(repo / "params" / "evaluate.yaml", "evaluate", {"max_utterances": 2, "transducer.beam_max_utterances": None})
    _set(repo / "params" / "export.yaml", "export", {"max_utterances": 2})
    _set(repo / "params" / "benchmark.yaml", "benchmark", {"transducer.max_utterances": 2, "transducer.warmup": 0})

    # 1. the README recipe: the profile as params/train.yaml (with the tiny model and loop), `dvc repro`
    train_yaml = repo / "params" / "train.yaml"
    committed = train_yaml.read_text()
    train_yaml.write_text((repo / "params" / "profiles" / "rnnt.yaml").read_text())
    _set(train_yaml, "train", {k.removeprefix("train."): v for k, v in TINY.items()})
    r = subprocess.run(["dvc", "repro"], cwd=repo, env=os.environ.copy(), capture_output=True, text=True, check=False)
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    for stage in ("train", "evaluate", "export", "benchmark"):
        assert f"Running stage '{stage}'" in r.stdout, r.stdout[-3000:]
    assert json.loads((repo / "reports" / "train.json").read_text())["steps"] == 3
    ev = json.loads((repo / "reports" / "evaluate.json").read_text())
    assert ev["kind"] == "transducer" and ev["decoding"]["beam"] == 4
    for split in ("dev", "test", "test_unseen_voice"):
        assert ev[split]["utterances"] == 2 and ev[split]["beam"]["utterances"] == 2, ev[split]
        assert (repo / "reports" / "eval" / f"{split}.beam.tsv").is_file()
    assert (repo / "reports" / "eval" / "alignment.png").is_file()
    ex = json.loads((repo / "reports" / "export.json").read_text())
    assert ex["passed"] and ex["kind"] == "transducer" and ex["utterances"] == 2
    for name in ("onnxruntime_fp32", "openvino_fp32"):
        assert ex["backends"][name]["passed"] and ex["backends"][name]["transcripts_differ"] == 0, ex["backends"]
    out = repo / "exports" / "rnnt_small"
    assert all((out / g).is_file() for g in GRAPHS) and (out / "openvino" / "encoder" / "model.xml").is_file()
    bench = json.loads((repo / "reports" / "benchmark.json").read_text())
    assert bench["kind"] == "transducer" and bench["stream"]["max_utterances"] == 2
    assert set(bench["cells"]) == {f"cpu/{b}/stream" for b in ("torch", "onnxruntime", "openvino")}
    assert all(c["utterances"] == 2 and c["audio_s_per_s"] > 0 for c in bench["cells"].values())
    assert len(set(bench["wer"].values())) == 1, bench["wer"]  # the same transcripts on every backend
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert lock["stages"]["train"]["params"]["params/train.yaml"]["train"]["model"]["family"] == "rnnt"
    train_yaml.write_text(committed)  # README: `git checkout params/train.yaml`

    # 2. the train-rnnt flow with the same overrides over all of flows.stages: nothing to re-run, then the registry
    state = train_rnnt(overrides=TINY, return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()
    statuses = {s: v["status"] for s, v in summary["stages"].items()}
    assert {"train", "evaluate", "export", "benchmark"} <= set(statuses), statuses
    assert set(statuses.values()) <= {"unchanged", "run-cache"}, json.dumps(statuses)
    assert train_yaml.read_text() == committed
    reg = summary["registry"]
    assert reg["registered"] and reg["model_name"] == "asr-rnnt" and reg["promoted"] and not reg["reused"], reg
    assert reg["wer_split"] == "test_unseen_voice" and reg["wer"] == ev["test_unseen_voice"]["wer"]
    from tasks import tracking

    v = tracking.client().get_model_version("asr-rnnt", reg["version"])
    assert v.tags["onnx_md5"] == registry.graphs_md5([out / g for g in GRAPHS])
    assert v.tags["family"] == "rnnt" and v.tags["train_name"] == "rnnt_small"
    assert str(tracking.client().get_model_version_by_alias("asr-rnnt", "champion").version) == reg["version"]
    arts = {a.path for a in tracking.client().list_artifacts(v.run_id, "model")}
    assert {f"model/{g}" for g in GRAPHS} | {"model/rnnt_export.json", "model/openvino"} <= arts, arts
    from flows.benchmark_nightly import champion_outputs

    assert champion_outputs(repo, "asr-rnnt")[1] == "rnnt_small"  # the nightly flow finds the champion's graphs
    parent = next(x for x in _runs() if x.info.run_id == summary["mlflow_parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.params["flow.family"] == "rnnt"
