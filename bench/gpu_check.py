"""One-command GPU check: every CUDA path of the project on one GPU, one JSON and one Markdown report.

    python bench/gpu_check.py --out "$OUT"            # full size on the GPU (H100/H200), <= 8 minutes
    python bench/gpu_check.py --device cpu --tiny     # every step at tiny size on the CPU (CI runs this)
    make gpu-check

Steps (``--steps 1,3`` runs a subset; the rest are listed as not selected):

1. the training engine on QuartzNet 15x5 in fp32, TF32, fp16 + GradScaler and bf16 (finite losses,
   sequences and audio seconds per second, peak memory), and a run stopped after N/2 steps with a
   checkpoint then resumed against an uninterrupted one (bit-exact on the CPU; on CUDA the max
   difference, and a probe of the engine's deterministic mode there);
2. the engine in a torch.distributed group of one (NCCL on the GPU, gloo on the CPU) set up over
   env:// on 127.0.0.1 as Ray Train's workers are, and the DDP wrapper the engine builds for more ranks;
3. the benchmark stage's CUDA runners (torch fp32 / TF32 / fp16 / bf16, CUDA graphs; onnxruntime's
   CUDA provider when installed) on the batch 1 x 2 s and batch 16 x 16.7 s cells: latency p50/p99
   against the targets, and agreement with CPU fp32 on the same random-weight model and inputs;
4. wav2vec 2.0 Base pre-training in bf16, Hourglass factors 2-6 against the plain Transformer;
5. RNN-T E6D2 training steps in bf16 and fp16 (and a Conformer when the model registry has one);
6. QuartzNet 15x5 training throughput on one GPU (bf16 and fp16, batch 64 of 16.7 s, or what fits).

The engine steps use a synthetic recipe built in memory (``gpu_check/training.py``), so nothing but
the library is needed: no data, manifests, prefect, mlflow, dvc, ray, jiwer, soundfile or DALI.
Every check is guarded (a failure becomes a row with its traceback, the rest still run) and every
step has a time cap; targets are judged only at full size on CUDA.

Exit status: 0 when the check ran, failed rows or not (the report says which); 1 with ``--strict``
when a row failed; 2 on a usage error (bad arguments, or ``--device cuda`` without a GPU, after
writing a report that says so).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STEPS = ("1", "2", "3", "4", "5", "6", "dali")
NOTES = [
    "Targets (pass/fail) are judged only at full size on CUDA; elsewhere the rows report figures ('ok').",
    "DLE references: QuartzNet inference A100 FP16 35.7 ms (batch 1 x 2 s) and 57.8 ms (batch 16 x 16.7 s); "
    "training 651.6 sequences/s on 8 A100s; wav2vec 2.0 Hourglass factor 4: 1.37x speed, 62.35% memory.",
    "Step 3 agreement: a fixed random-weight QuartzNet (BatchNorm calibrated on random audio) and the same "
    "features for every runner; fp32 runners pass the export stage's fp32 gate, CUDA-graph runners must equal "
    "their eager twin; reduced precisions report token agreement, WER against the CPU fp32 transcripts and "
    "the max log-prob difference (near-tied frames of a random model flip, so they are not gated).",
    "Step 1 on CUDA resumes with cuDNN deterministic but without torch.use_deterministic_algorithms: the "
    "probe row says what the engine's deterministic mode does there.",
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="where every step runs (default cuda)")
    p.add_argument("--tiny", action="store_true", help="tiny sizes (seconds on a CPU); no targets are judged")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "gpu_check"), help="report folder")
    p.add_argument("--strict", action="store_true", help="exit 1 when any row failed")
    p.add_argument("--budget", type=float, default=None, help="seconds for the whole run (default 480; tiny 300)")
    p.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = p.parse_args(argv)
    args.steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = sorted(set(args.steps) - set(STEPS))
    if unknown or not args.steps:
        p.error(f"--steps: unknown {unknown or 'empty list'}; known: {','.join(STEPS)}")
    if args.budget is not None and args.budget <= 0:
        p.error("--budget must be > 0")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)  # before torch is imported: usage errors answer at once
    for p in (str(HERE), str(ROOT)):
        if p not in sys.path:
            sys.path.insert(0, p)

    import logging

    import torch
    from gpu_check import harness as h
    from gpu_check.inference import step3, step4
    from gpu_check.project import machine_facts
    from gpu_check.training import step1, step2, step5, step6

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.monotonic()
    started = h.now_iso()
    sizes = h.Sizes.tiny() if args.tiny else h.Sizes.full()
    budget = args.budget or sizes.budget_s
    device = torch.device("cuda:0" if args.device == "cuda" else "cpu")

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f} s] {msg}", flush=True)

    env = h.environment(device, machine_facts)
    rows: list[dict] = []

    def build_report(rows: list[dict], complete: bool) -> dict:
        c = h.counts(rows)
        return {
            "schema": "asr-toolkit/gpu-check/1",
            "command": shlex.join(["python", "bench/gpu_check.py", *argv]),
            "started": started,
            "elapsed_s": round(time.monotonic() - t0, 1),
            "complete": complete,  # False: a report written after a step, before the run ended
            "mode": {"device": args.device, "tiny": args.tiny, "budget_s": budget, "steps": args.steps},
            "environment": env,
            "counts": c,
            "failed": c["fail"] + c["error"] > 0,
            "rows": rows,
            "notes": NOTES,
        }

    usage_error = args.device == "cuda" and not torch.cuda.is_available()
    if usage_error:
        rows.append(
            h.row(
                "env",
                "CUDA device",
                "fail",
                "torch.cuda.is_available() is False",
                target="a CUDA GPU (use --device cpu --tiny on a machine without one)",
            )
        )
    else:
        log(
            f"gpu check on {env.get('device_name') or 'cpu'} ({'tiny' if args.tiny else 'full size'}), "
            f"budget {budget:.0f} s"
        )
        steps = {"1": step1, "2": step2, "3": step3, "4": step4, "5": step5, "6": step6}
        state = h.GlobalState()
        with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
            ctx = h.Context(device, args.tiny, sizes, Path(tmp), t0=t0, log=log)
            for step, fn in steps.items():
                title = h.STEP_TITLES[step]
                if step not in args.steps:
                    rows.append(h.skipped(step, "step", "not selected (--steps)"))
                    continue
                cap = min(sizes.cap(step), budget - (time.monotonic() - t0))
                if cap < 10:
                    rows.append(h.skipped(step, "step", f"the run's time budget ({budget:.0f} s) is spent"))
                    continue
                log(f"step {step}: {title} (cap {cap:.0f} s)")
                ctx.step_deadline = time.monotonic() + cap
                t = time.monotonic()
                try:
                    with h.time_cap(cap):
                        new = fn(ctx)
                except Exception as e:  # a step that breaks outside its guarded checks: one row, go on
                    new = [h.error_row(step, "step", e)]
                finally:
                    h.step_done()
                    state.restore()
                for r in new:
                    if r["elapsed_s"] is None:
                        r["elapsed_s"] = round(time.monotonic() - t, 2)
                    log(f"  {r['status']:<7} {r['name']}: {r['summary'] or r['reason'] or r['error'] or ''}"[:400])
                rows += new
                # after every step: a run that dies later (a crash in native code) still leaves its figures
                h.write_reports(Path(args.out), build_report(rows, complete=False))
    if "dali" in args.steps:
        reason = (
            "not testable there (the 425 MB wheel cannot travel)"
            if args.device == "cuda"
            else "a GPU check; the CPU pipeline's parity with the torch filterbank is tests/asr_core/features/test_features.py's"
        )
        rows.append(h.skipped("dali", "DALI GPU feature pipeline", reason))
    report = build_report(rows, complete=True)
    j, m = h.write_reports(Path(args.out), report)
    print(h.text_summary(report), flush=True)
    print(f"reports: {j} and {m}", flush=True)
    if usage_error:
        print("error: --device cuda but torch sees no CUDA device (use --device cpu --tiny)", file=sys.stderr)
        return 2
    return 1 if args.strict and report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
