"""The training curves behind ``dvc plots``: one row per step after a resume, torn lines dropped."""

from __future__ import annotations

from tasks.train_log import StageLogger, export_curves, read_curve


def _log(logger: StageLogger, step: int, loss: float) -> None:
    m = {"loss": loss, "lr": 0.1, "grad_norm": 1.0, "sequences_per_s": 2.0, "audio_s_per_s": 3.0, "epoch": 0}
    logger.on_log(step, m)


def test_a_resumed_run_keeps_the_last_row_of_each_step(tmp_path):
    run = tmp_path / "ckpt"
    run.mkdir()
    first = StageLogger(None, None, run)
    for step in (1, 2, 3, 4):
        _log(first, step, 10.0 - step)
    first.on_eval(4, {"wer": 0.5, "cer": 0.2, "loss": 1.5})
    # killed after step 4, resumed from the checkpoint at step 2: steps 3 and 4 are replayed
    with open(run / "train_curve.csv", "a") as f:
        f.write("5,0.1")  # a line torn by the kill
    resumed = StageLogger(None, None, run)
    for step in (3, 4, 5):
        _log(resumed, step, 20.0 - step)
    resumed.on_eval(4, {"wer": 0.25, "cer": 0.1, "loss": 1.0})

    out = tmp_path / "reports"
    written = export_curves(run, out)
    assert sorted(p.name for p in written) == ["dev_curve.csv", "train_curve.csv"]
    rows = read_curve(out / "train_curve.csv")
    assert [(r["step"], r["loss"]) for r in rows] == [("1", "9"), ("2", "8"), ("3", "17"), ("4", "16"), ("5", "15")]
    assert [(r["step"], r["wer"]) for r in read_curve(out / "dev_curve.csv")] == [("4", "0.25")]


def test_curves_are_written_even_when_nothing_was_logged(tmp_path):
    export_curves(tmp_path / "absent", tmp_path / "out")
    assert (tmp_path / "out" / "train_curve.csv").read_text() == "step,loss,lr,grad_norm,audio_s_per_s,epoch\n"
    assert read_curve(tmp_path / "out" / "dev_curve.csv") == []
