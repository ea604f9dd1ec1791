"""Benchmark outputs: the CSV of cells, the PNG plots and the short Markdown report."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from asr_core.io.atomic import atomic_path, atomic_write_text

COLUMNS = (
    "cell",
    "device",
    "runner",
    "batch",
    "clip_seconds",
    "iterations",
    "audio_seconds",
    "data_mean_ms",
    "data_p50_ms",
    "data_p90_ms",
    "data_p95_ms",
    "data_p99_ms",
    "net_mean_ms",
    "net_p50_ms",
    "net_p90_ms",
    "net_p95_ms",
    "net_p99_ms",
    "e2e_mean_ms",
    "e2e_p50_ms",
    "e2e_p90_ms",
    "e2e_p95_ms",
    "e2e_p99_ms",
    "rtfx",
    "rtfx_net",
    "peak_mem_mb",
    "peak_mem_kind",
    "wer",
)


def parse_cell(cell: str) -> tuple[str, str, int, float]:
    """``cpu/openvino_bf16/bs16/16.7s`` -> ("cpu", "openvino_bf16", 16, 16.7)."""
    device, runner, bs, clip = cell.split("/")
    return device, runner, int(bs[2:]), float(clip[:-1])


def cells_csv(cells: dict[str, dict], wer: dict[str, float | None]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for cell, stats in cells.items():
        device, runner, batch, clip = parse_cell(cell)
        w.writerow(
            {
                **stats,
                "cell": cell,
                "device": device,
                "runner": runner,
                "batch": batch,
                "clip_seconds": clip,
                "wer": wer.get(f"{device}/{runner}"),
            }
        )
    return buf.getvalue()


def _series(cells: dict[str, dict]) -> dict[tuple[str, float], dict[int, dict]]:
    out: dict[tuple[str, float], dict[int, dict]] = {}
    for cell, stats in cells.items():
        device, runner, batch, clip = parse_cell(cell)
        out.setdefault((f"{device}/{runner}", clip), {})[batch] = stats
    return out


def plot_latency(cells: dict[str, dict], path: str | Path) -> Path:
    """End-to-end p50 latency (with p99 as a dashed line) against batch size, one panel per clip length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = _series(cells)
    clips = sorted({c for _, c in series})
    fig, axes = plt.subplots(1, len(clips), figsize=(5 * len(clips), 4), squeeze=False)
    for ax, clip in zip(axes[0], clips):
        for (runner, c), by_batch in sorted(series.items()):
            if c != clip:
                continue
            bs = sorted(by_batch)
            (line,) = ax.plot(bs, [by_batch[b]["e2e_p50_ms"] for b in bs], marker="o", label=runner)
            ax.plot(bs, [by_batch[b]["e2e_p99_ms"] for b in bs], ls="--", color=line.get_color(), alpha=0.5)
        ax.set(
            title=f"{clip:g} s clips",
            xlabel="batch size",
            ylabel="latency per batch (ms; p50, p99 dashed)",
            yscale="log",
        )
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({b for s in series.values() for b in s}))
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_rtfx(cells: dict[str, dict], path: str | Path) -> Path:
    """RTFx (median, end to end) per runner: one bar group per (batch, clip) cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    series = _series(cells)
    runners = sorted({r for r, _ in series})
    shapes = sorted({(b, c) for (r, c), s in series.items() for b in s}, key=lambda t: (t[1], t[0]))
    fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(shapes) * max(1, len(runners)) / 2), 4.5))
    width = 0.8 / max(1, len(runners))
    x = np.arange(len(shapes))
    for i, runner in enumerate(runners):
        vals = [series.get((runner, c), {}).get(b, {}).get("rtfx", np.nan) for b, c in shapes]
        ax.bar(x + i * width, vals, width, label=runner)
    ax.set_xticks(x + width * (len(runners) - 1) / 2, [f"bs{b}\n{c:g}s" for b, c in shapes], fontsize=7)
    ax.set(ylabel="RTFx (audio s per s, median, end to end)", yscale="log", title="Throughput per runner")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def markdown_report(report: dict) -> str:
    """The short human report: machine, best runner per cell, WER per runner, skipped runners."""
    m = report["machine"]
    lines = [
        "# Inference benchmark",
        "",
        f"Model: `{report['model']}`. Machine: {m['cpu_model']} ({m['cpu_affinity']} cores), "
        f"GPU: {m['gpu'] or 'none'}; torch {m['versions']['torch']}, onnxruntime {m['versions']['onnxruntime']}, "
        f"OpenVINO {m['versions']['openvino']}; load average {m.get('load_average_1m')}.",
        f"Warm-up {report['grid']['warmup']}, up to {report['grid']['iterations']} timed iterations per cell "
        f"(at least {report['grid']['min_iterations']}). RTFx = audio seconds / median end-to-end latency.",
        "",
    ]
    series = _series(report["cells"])
    shapes = sorted({(b, c) for (r, c), s in series.items() for b in s}, key=lambda t: (t[1], t[0]))
    if shapes:
        lines += [
            "| batch | clip | best runner | e2e p50 ms | p99 ms | RTFx | net RTFx |",
            "|---|---|---|---|---|---|---|",
        ]
        for b, c in shapes:
            cands = [(s[b]["rtfx"], r, s[b]) for (r, cc), s in series.items() if cc == c and b in s]
            rtfx, runner, st = max(cands)
            lines.append(
                f"| {b} | {c:g} s | {runner} | {st['e2e_p50_ms']:.1f} | {st['e2e_p99_ms']:.1f} | "
                f"{rtfx:.1f} | {st['rtfx_net']:.1f} |"
            )
        lines.append("")
    if report.get("wer"):
        lines += ["| runner | WER (test) |", "|---|---|"]
        lines += [f"| {r} | {'n/a' if w is None else f'{100 * w:.2f}%'} |" for r, w in report["wer"].items()]
        lines.append("")
    if report.get("skipped"):
        lines += ["Skipped: " + "; ".join(f"{r} ({why})" for r, why in report["skipped"].items()), ""]
    for t in report.get("train_throughput") or []:
        lines.append(
            f"Training throughput ({t['precision']}, batch {t['batch_size']} x {t['clip_seconds']:g} s): "
            f"{t['sequences_per_s']:.2f} sequences/s, {t['audio_s_per_s']:.1f} audio s/s."
        )
    lines += [
        "",
        "Plots: `latency.png` (latency against batch size), `rtfx.png` (RTFx per runner); every cell in `cells.csv`.",
    ]
    return "\n".join(lines) + "\n"


def write_outputs(report: dict, out_dir: str | Path) -> list[Path]:
    """cells.csv, latency.png, rtfx.png, report.md, machine.json under ``out_dir``."""
    import json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [
        atomic_write_text(out / "cells.csv", cells_csv(report["cells"], report.get("wer") or {})),
        atomic_write_text(out / "report.md", markdown_report(report)),
        atomic_write_text(out / "machine.json", json.dumps(report["machine"], indent=2, sort_keys=True) + "\n"),
    ]
    if report["cells"]:
        paths += [plot_latency(report["cells"], out / "latency.png"), plot_rtfx(report["cells"], out / "rtfx.png")]
    return paths
