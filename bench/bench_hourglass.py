"""The Hourglass table (DLE's wav2vec 2.0): pre-training throughput and peak memory, plain vs factors 2-6.

    python bench/bench_hourglass.py                                       # small preset on the CPU (~10-20 min)
    python bench/bench_hourglass.py --device cuda --preset base --precision bf16 --batch-size 8 --seconds 15.6
    python bench/bench_hourglass.py --factors 4 --steps 3 --out bench/results/hourglass_cpu.json

Same batch (by default 4 utterances of 11.7-15.6 s: DLE's pre-training crop is 250,000 samples),
same seed, same model for every configuration; only the layer plan changes
(``[p, (L - 2p, f), p]``, DLE's ``[2, (8, f), 2]`` for Base). Each configuration runs in its own
process (``--isolate``, the default on the CPU) so that one's allocations do not raise the next one's
peak RSS. Prints a Markdown table of ratios to the plain model beside DLE's and writes the JSON to
``--out``. A benchmark, not a test: figures depend on what else the machine does (``load_avg`` is
recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tasks.offline  # noqa: E402,F401
from asr_core.io.atomic import atomic_write_text  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="small", help="small (12 x 256, the CPU default) | tiny | base | large")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--factors", default="2,3,4,5,6")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seconds", type=float, default=15.6, help="longest utterance of the batch (the others 75-100%%)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument(
        "--isolate",
        choices=["auto", "yes", "no"],
        default="auto",
        help="one process per configuration (auto: on the CPU)",
    )
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # internal: run one factor, print JSON
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    import torch

    from asr_core.bench.hourglass import hourglass_table, markdown, run_config

    if args.threads:
        torch.set_num_threads(args.threads)
    kw = dict(
        batch_size=args.batch_size,
        seconds=args.seconds,
        steps=args.steps,
        warmup=args.warmup,
        device=args.device,
        precision=args.precision,
    )
    if args.one is not None:
        print("ROW " + json.dumps(run_config(args.preset, args.one, **kw)))
        return {}
    factors = [int(f) for f in args.factors.split(",") if f]
    isolate = args.isolate == "yes" or (args.isolate == "auto" and not args.device.startswith("cuda"))
    if isolate:
        rows = {}

        def runner(preset, f, **_):
            cmd = [
                sys.executable,
                __file__,
                "--one",
                str(f),
                "--preset",
                args.preset,
                "--device",
                args.device,
                "--precision",
                args.precision,
                "--batch-size",
                str(args.batch_size),
                "--seconds",
                str(args.seconds),
                "--steps",
                str(args.steps),
                "--warmup",
                str(args.warmup),
            ]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                raise RuntimeError(f"hourglass: factor {f} failed:\n{proc.stderr[-2000:]}")
            out = proc.stdout
            rows[f] = json.loads(next(line[4:] for line in out.splitlines() if line.startswith("ROW ")))
            return rows[f]

        import asr_core.bench.hourglass as hg

        hg.run_config = runner  # the table logic, with each row from a fresh process
    table = hourglass_table(args.preset, factors, **kw)
    table.update(load_avg=os.getloadavg(), torch=torch.__version__, isolated=isolate, threads=torch.get_num_threads())
    print(markdown(table))
    if args.out:
        atomic_write_text(args.out, json.dumps(table, indent=2) + "\n")
    return table


if __name__ == "__main__":
    main()
