"""What rank 0 of the train stage records while it trains: a console line, MLflow metrics and the
curve files that ``dvc plots`` draws.

The curves are appended, row by row, to ``train_curve.csv`` / ``dev_curve.csv`` in the run's
checkpoint folder: that folder survives a kill (DVC deletes the stage's outputs, not it), so a
resumed run's curves start at step 0. A resumed run replays the steps after its last
checkpoint and logs them again; :func:`export_curves` keeps the last row of each step, which is
the row of the run that went on to finish.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("tasks.train")  # not print(): Ray Train tees a worker's print to two places

# curve file -> its columns (the engine's metric names); "step" first, the x axis of the plots
CURVES: dict[str, tuple[str, ...]] = {
    "train_curve.csv": ("step", "loss", "lr", "grad_norm", "audio_s_per_s", "epoch"),
    "dev_curve.csv": ("step", "wer", "cer", "loss"),
}


class StageLogger:
    """Engine callbacks on rank 0: a console line per log, MLflow metrics into the stage run, and
    a row per log / evaluation in the curve files under ``curve_dir`` (None: no curves)."""

    def __init__(self, run_id: str | None, tracking_uri: str | None, curve_dir: str | Path | None = None) -> None:
        self.client = None
        self.run_id = run_id
        self.curve_dir = Path(curve_dir) if curve_dir else None
        self._opened: set[str] = set()
        if run_id and tracking_uri:
            from mlflow.tracking import (
                MlflowClient,  # the stage run is open in the driver: log by its id
            )

            self.client = MlflowClient(tracking_uri)

    def _log(self, metrics: dict[str, Any], step: int, prefix: str = "") -> None:
        if self.client is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [
            Metric(prefix + k, float(v), now, step)
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        ]
        self.client.log_batch(self.run_id, metrics=batch, synchronous=True)

    def _append(self, name: str, step: int, metrics: dict[str, Any]) -> None:
        if self.curve_dir is None:
            return
        path = self.curve_dir / name
        columns = CURVES[name]
        row = [step] + [_cell(metrics.get(c)) for c in columns[1:]]
        new = not path.is_file() or path.stat().st_size == 0
        torn = False
        if not new and name not in self._opened:  # a killed run may have left half a line: end it
            with open(path, "rb") as f:
                f.seek(-1, 2)
                torn = f.read(1) != b"\n"
        self._opened.add(name)
        with open(path, "a", newline="", encoding="utf-8") as f:
            if torn:
                f.write("\n")
            w = csv.writer(f, lineterminator="\n")
            if new:
                w.writerow(columns)
            w.writerow(row)

    def on_log(self, step: int, m: dict[str, Any]) -> None:
        log.info(
            f"step {step:6d}  loss {m['loss']:.4f}  lr {m['lr']:.3g}  |g| {m['grad_norm']:.3g}  "
            f"{m['sequences_per_s']:.1f} seq/s  {m['audio_s_per_s']:.1f} audio s/s  epoch {m['epoch']}"
        )
        self._log(m, step, "train_")
        self._append("train_curve.csv", step, m)

    def on_eval(self, step: int, m: dict[str, Any]) -> None:
        log.info(
            f"step {step:6d}  dev WER {m.get('wer', float('nan')):.4f}  CER {m.get('cer', float('nan')):.4f}  "
            f"loss {m.get('loss', float('nan')):.3f}  ({m.get('seconds', 0):.1f} s)"
        )
        self._log(m, step, "dev_")
        self._append("dev_curve.csv", step, m)

    def on_checkpoint(self, step: int, path: Path) -> None:
        log.info(f"step {step:6d}  checkpoint {path}")

    def on_bad(self, step: int, utt_ids: list, reason: str) -> None:
        log.warning(f"step {step:6d}  skipped {utt_ids}: {reason}")


def _cell(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def read_curve(path: Path) -> list[dict[str, str]]:
    """A curve file's rows, one per step (the last row logged for a step wins), sorted by step.
    A torn last line (the run was killed mid-write) is dropped."""
    if not path.is_file():
        return []
    rows: dict[int, dict[str, str]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        for r in reader:
            try:
                step = int(r.get("step") or "")
            except ValueError:
                continue
            if None in r.values() or None in r:  # fewer or more cells than columns: a torn line
                continue
            rows[step] = r
    return [rows[s] for s in sorted(rows)]


def export_curves(src_dir: Path, dest_dir: Path) -> list[Path]:
    """Write each curve of ``src_dir``, one row per step, to ``dest_dir`` atomically. Every curve
    file is written, with its header only if the run logged nothing, so that the stage's declared
    plots outputs always exist. Returns the written paths."""
    from asr_core.io.atomic import atomic_write_text

    written = []
    for name, columns in CURVES.items():
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        for r in read_curve(src_dir / name):
            w.writerow([r.get(c, "") for c in columns])
        written.append(atomic_write_text(dest_dir / name, buf.getvalue()))
    return written
