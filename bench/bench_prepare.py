"""Benchmark the prepare step: decode + downmix + resample + 16-bit FLAC write.

    python bench/bench_prepare.py --minutes 30 --out bench/results/prepare.json

Makes ``--minutes`` of speech-like audio (asr_core.testing.make_wave: harmonics
with a syllable-rate envelope) as 3-6 s mono 16-bit FLAC clips at ``--input-rate``
(22050 Hz, like the synthetic espeak corpus; 16000 exercises the LibriSpeech
byte-copy path). Writing the corpus is not timed. Then runs ``prepare_corpus``
``--repeats`` times into fresh folders and reports real time factors from the
whole call's wall time (pool start, every file, manifests), plus the CPU seconds
per stage summed over the workers. Other jobs on the machine skew the figures:
the load average before and after each run is recorded, and the per-stage
profile has CPU seconds (robust to load) beside wall seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from asr_core.data.items import INDEX_NAME, SourceItem, write_index
from asr_core.data.prepare import PrepareConfig, prepare_corpus
from asr_core.io import atomic_write_json
from asr_core.testing import make_wave


def make_corpus(root: Path, minutes: float, sample_rate: int, seed: int = 0) -> tuple[Path, float]:
    """Write 3-6 s clips until ``minutes`` of audio; return (index path, seconds)."""
    rng = np.random.default_rng(seed)
    items, total, i = [], 0.0, 0
    while total < minutes * 60:
        seconds = float(rng.uniform(3.0, 6.0))
        path = root / "wav" / f"utt{i:06d}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, make_wave(seconds, sample_rate, seed=i), sample_rate, subtype="PCM_16")
        items.append(SourceItem(f"utt{i:06d}", "train", f"wav/{path.name}", "the quick brown fox", f"spk{i % 20}"))
        total += round(seconds * sample_rate) / sample_rate
        i += 1
    write_index(root / INDEX_NAME, items)
    return root / INDEX_NAME, total


def machine_facts() -> dict:
    import torch
    import torchaudio

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torchaudio": torchaudio.__version__,
        "soundfile": sf.__version__,
        "libsndfile": sf.__libsndfile_version__,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="minutes of audio in the corpus")
    ap.add_argument("--input-rate", type=int, default=22050, help="sample rate of the generated clips")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--format", default="flac", choices=["flac", "wav"])
    ap.add_argument("--repeats", type=int, default=3, help="timed runs; the median is the headline")
    ap.add_argument("--out", type=Path, default=Path("bench/results/prepare.json"))
    ap.add_argument("--workdir", type=Path, default=None, help="where the corpus goes (default: a temp dir)")
    args = ap.parse_args(argv)

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_prepare_"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        index, seconds = make_corpus(workdir / "corpus", args.minutes, args.input_rate)
        print(f"corpus: {seconds / 60:.1f} min at {args.input_rate} Hz in {time.perf_counter() - t0:.1f} s (not timed)")
        cfg = PrepareConfig(workers=args.workers, format=args.format)
        runs = []
        for r in range(args.repeats):
            out = workdir / f"out{r}"
            shutil.rmtree(out, ignore_errors=True)
            load_before = os.getloadavg()
            summary = prepare_corpus(index, out, cfg, progress=False)
            runs.append(
                {
                    "wall_seconds": summary["wall_seconds"],
                    "rtfx": summary["rtfx"],
                    "profile": summary["profile"],
                    "sync_seconds": summary["sync_seconds"],
                    "passthrough_copies": summary["passthrough_copies"],
                    "loadavg_1m_before": round(load_before[0], 2),
                    "loadavg_1m_after": round(os.getloadavg()[0], 2),
                }
            )
            assert summary["rejected"] == 0, summary["rejects_by_reason"]
        walls = [r["wall_seconds"] for r in runs]
        audio = summary["processed_audio_seconds"]
        # stage totals of the fastest run (least disturbed by other jobs)
        best = min(range(len(runs)), key=lambda i: walls[i])
        cpu = runs[best]["profile"]["cpu_seconds"]
        busy = sum(cpu.values())
        result = {
            "command": " ".join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])]),
            "audio_seconds": round(audio, 2),
            "utterances": summary["accepted"],
            "input_rate": args.input_rate,
            "output": f"{cfg.sample_rate} Hz 16-bit mono {cfg.format}",
            "workers": args.workers,
            "wall_seconds_median": round(statistics.median(walls), 3),
            "rtfx_median": round(audio / statistics.median(walls), 1),
            "rtfx_best": round(audio / min(walls), 1),
            # audio seconds per CPU second spent inside the stages: what one core does
            # undisturbed, and how the CPU time splits between stages
            "rtfx_per_cpu_second_in_stages": round(audio / busy, 1) if busy else None,
            "stage_cpu_share_best_run": {k: round(v / busy, 3) for k, v in cpu.items()} if busy else {},
            "stage_profile_best_run": runs[best]["profile"],
            "runs": runs,
            "machine": machine_facts(),
        }
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    atomic_write_json(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("machine",)}, indent=2))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
