"""Nightly regression detection against two synthetic benchmark histories in MLflow (one regressed, one not)."""

import json

import pytest
import yaml

from asr_core.bench.regression import compare, flat_metrics, parse_rules, report_markdown
from tasks import bench_history

MACHINE = {"cpu_model": "Test CPU", "cpu_affinity": 2, "gpu": None}
CELLS = ("cpu/openvino_bf16/bs1/7s", "cpu/torch_fp32/bs16/16.7s")


def _report(rtfx: dict, wer: dict, model="models/m/model.pt", run_id=None) -> dict:
    cells = {c: {"rtfx": rtfx[c], "e2e_p50_ms": 7000 / rtfx[c], "iterations": 10} for c in CELLS}
    return {"model": model, "machine": MACHINE, "cells": cells, "wer": wer, "mlflow_run_id": run_id}


NIGHTS = [  # newest first: a little noise around RTFx 180 / 40, WER fixed
    ({CELLS[0]: 182.0, CELLS[1]: 41.0}, {"cpu/openvino_bf16": 0.4355}),
    ({CELLS[0]: 176.0, CELLS[1]: 39.0}, {"cpu/openvino_bf16": 0.4355}),
    ({CELLS[0]: 180.0, CELLS[1]: 40.0}, {"cpu/openvino_bf16": 0.4355}),
]
PARAMS = {
    "benchmark": {
        "regression": {
            "history_runs": 5,
            "rules": {"rtfx": {"better": "higher", "max_change": 0.10}, "wer": {"better": "equal", "max_change": 0.0}},
        }
    }
}


def test_compare_pure():
    rules = parse_rules(None)  # defaults: 10% RTFx, any WER change
    history = [flat_metrics(_report(*n)) for n in NIGHTS]
    ok = compare(
        flat_metrics(_report({CELLS[0]: 170.0, CELLS[1]: 44.0}, {"cpu/openvino_bf16": 0.4355})), history, rules
    )
    assert not ok["regressed"] and ok["findings"] == [] and ok["compared"] == 3
    bad = compare(
        flat_metrics(_report({CELLS[0]: 150.0, CELLS[1]: 40.0}, {"cpu/openvino_bf16": 0.4360})), history, rules
    )
    assert bad["regressed"]
    by = {(f["cell"], f["metric"]): f for f in bad["findings"]}
    assert set(by) == {(CELLS[0], "rtfx"), ("cpu/openvino_bf16", "wer")}
    f = by[(CELLS[0], "rtfx")]
    assert f["old"] == 180.0 and f["new"] == 150.0 and f["change"] == pytest.approx(-1 / 6, abs=1e-6)
    md = report_markdown(bad)
    assert "REGRESSED" in md and CELLS[0] in md and "180" in md and "150" in md and "-16.7%" in md
    first = compare(flat_metrics(_report({CELLS[0]: 1.0, CELLS[1]: 1.0}, {})), [], rules)
    assert not first["regressed"] and "baseline" in report_markdown(first)
    assert len(first["new_cells"]) == 2
    with pytest.raises(ValueError, match="better"):
        parse_rules({"rtfx": {"better": "faster", "max_change": 0.1}})
    with pytest.raises(ValueError, match="rtfx"):
        parse_rules({"rtfx": {"better": "higher", "threshold": 0.1}})


def _log_history(uri: str, experiment: str, nights, model="models/m/model.pt") -> None:
    """Benchmark runs as the stage logs them: tag stage=benchmark, flat <cell>/<metric> metrics."""
    from mlflow.tracking import MlflowClient

    from asr_core.bench.measure import machine_id

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    for rtfx, wer in reversed(nights):  # oldest first, as the nights happened
        run = client.create_run(
            exp_id, tags={"stage": "benchmark", "bench.machine": machine_id(MACHINE), "bench.model": model}
        )
        for k, v in flat_metrics(_report(rtfx, wer, model)).items():
            client.log_metric(run.info.run_id, k, v)
        client.set_terminated(run.info.run_id, "FINISHED")


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _log_history(uri, "benchmark-nightly", NIGHTS)
    # noise that must not count: another model's runs and a failed run
    _log_history(
        uri,
        "benchmark-nightly",
        [({CELLS[0]: 9999.0, CELLS[1]: 9999.0}, {"cpu/openvino_bf16": 0.1})],
        model="models/other/model.pt",
    )
    return uri


def test_history_not_regressed(store):
    now = _report({CELLS[0]: 174.0, CELLS[1]: 42.0}, {"cpu/openvino_bf16": 0.4355})
    r = bench_history.compare_with_history(now, params=PARAMS, tracking_uri=store)
    assert not r["regressed"] and r["findings"] == [] and r["history_runs"] == 3 and r["compared"] == 3
    assert "no regression" in r["report_md"]


def test_history_regressed(store, tmp_path, capsys):
    now = _report({CELLS[0]: 181.0, CELLS[1]: 30.0}, {"cpu/openvino_bf16": 0.4390})
    r = bench_history.compare_with_history(now, params=PARAMS["benchmark"], tracking_uri=store)
    assert r["regressed"]
    by = {(f["cell"], f["metric"]): f for f in r["findings"]}
    assert set(by) == {(CELLS[1], "rtfx"), ("cpu/openvino_bf16", "wer")}
    assert by[(CELLS[1], "rtfx")]["old"] == 40.0 and by[(CELLS[1], "rtfx")]["new"] == 30.0
    assert by[(CELLS[1], "rtfx")]["change"] == pytest.approx(-0.25)
    assert by[("cpu/openvino_bf16", "wer")]["change"] == pytest.approx(0.0035)
    assert CELLS[1] in r["report_md"] and "| 40 | 30 |" in r["report_md"]
    # the CLI: exit status 1 and the Markdown report written
    (tmp_path / "b.json").write_text(json.dumps(now))
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(PARAMS))
    with pytest.raises(SystemExit) as e:
        bench_history.main(
            [
                "--report",
                str(tmp_path / "b.json"),
                "--params",
                str(tmp_path / "p.yaml"),
                "--tracking-uri",
                store,
                "--out",
                str(tmp_path / "regression.md"),
            ]
        )
    assert e.value.code == 1
    assert "REGRESSED" in (tmp_path / "regression.md").read_text()


def test_history_skips_the_current_run_and_an_unknown_experiment(store):
    now = _report({CELLS[0]: 100.0, CELLS[1]: 40.0}, {"cpu/openvino_bf16": 0.4355})
    r = bench_history.compare_with_history(now, params=PARAMS, tracking_uri=store, experiment="nothing-here")
    assert not r["regressed"] and r["history_runs"] == 0
    from mlflow.tracking import MlflowClient

    newest = MlflowClient(store).search_runs(
        [MlflowClient(store).get_experiment_by_name("benchmark-nightly").experiment_id],
        filter_string="tags.`bench.model` = 'models/m/model.pt'",
        order_by=["attributes.start_time DESC"],
    )[0]
    r = bench_history.compare_with_history(
        {**now, "mlflow_run_id": newest.info.run_id}, params=PARAMS, tracking_uri=store
    )
    assert r["history_runs"] == 2  # the newest night is "this" run: compared with the two before it
    with pytest.raises(ValueError, match="thresholds"):
        bench_history.compare_with_history(now, params={"regression": {"thresholds": 1}}, tracking_uri=store)
