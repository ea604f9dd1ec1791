"""Training throughput benchmark: precision, Ray Train overhead, 1 versus 2 Ray workers.

    python bench/bench_train.py --out bench/results/train.json            # everything (~10 min on 2 cores)
    python bench/bench_train.py --only ray --steps 150                    # one group

Every case trains from scratch on the prepared default corpus (``data/prepared``: run
``make run`` or ``dvc repro prepare tokenizer`` first) with the recipe of
``params/train.yaml``, changed only as each case says, for a fixed number of steps without
evaluation, and reports the training loop's own figures (``train_seconds``: the time between
the first and the last step, so start-up and the final save are excluded) next to the
wall-clock time of the whole call:

- ``precision``: QuartzNet 5x5 (6.71 M parameters, the paper's kernels) in fp32 and in bf16
  autocast, a plain in-process loop with 2 threads (the engine without Ray);
- ``ray``: the default model (``params/train.yaml``) as a plain loop (``train_loop_per_worker``
  called directly: no Ray at all), through Ray Train with 1 worker (2 threads), and with 2
  workers (1 thread each, gloo all-reduce, twice the audio per step). Overhead = the Ray
  1-worker loop time per step over the plain loop's, minus one.

Results (JSON, with the machine facts) go to ``--out``; a table is printed. A benchmark,
not a test: the figures depend on what else the machine is doing (``load_avg`` is recorded).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tasks.offline  # noqa: E402,F401
from asr_core.io.atomic import atomic_write_text  # noqa: E402
from tasks.common import load_params  # noqa: E402


def _case(
    base: dict,
    steps: int,
    *,
    model: dict | None = None,
    precision: str | None = None,
    ray: dict | None = None,
    batch_seconds: float | None = None,
) -> dict:
    s = copy.deepcopy(base)
    if model is not None:
        s["model"] = model
    loop = s.setdefault("loop", {})
    loop.update(
        max_steps=steps, max_minutes=None, eval_every=0, eval_at_end=False, ckpt_every=0, log_every=max(1, steps // 5)
    )
    if precision:
        loop["precision"] = precision
    if batch_seconds:
        s["data"]["max_batch_seconds"] = batch_seconds
    s["ray"] = {**s.get("ray", {}), **(ray or {})}
    s["optim"]["schedule"] = {**s["optim"]["schedule"], "warmup_steps": min(steps // 4, 50)}
    return s


def _run(name: str, section: dict, plain: bool) -> dict:
    from tasks.train import _fit, train_loop_per_worker, worker_config

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        section = {**section, "name": name}
        t0 = time.monotonic()
        config, ray_cfg, _ = worker_config(section, Path(tmp), fresh=True)
        summary = train_loop_per_worker(config) if plain else _fit(config, ray_cfg, name)
        wall = time.monotonic() - t0
    steps = summary["steps"]
    return {
        "case": name,
        "steps": steps,
        "world_size": summary["world_size"],
        "train_seconds": round(summary["train_seconds"], 2),
        "wall_seconds": round(wall, 2),
        "seconds_per_step": round(summary["train_seconds"] / steps, 4),
        "audio_s_per_s": round(summary["audio_s_per_s"], 2),
        "sequences_per_s": round(summary["sequences_per_s"], 2),
        "final_loss": round(summary["final_loss"], 4),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def precision_cases(base: dict, steps: int) -> list[dict]:
    model = {"family": "quartznet", "preset": "5x5", "overrides": {}}
    return [
        _run(
            f"qn5x5_{p}",
            _case(base, steps, model=model, precision=p, batch_seconds=48, ray={"torch_threads": 2}),
            plain=True,
        )
        for p in ("fp32", "bf16")
    ]


def ray_cases(base: dict, steps: int) -> list[dict]:
    one = {"num_workers": 1, "torch_threads": 2, "resources_per_worker": {"CPU": 2}, "num_cpus": 2}
    two = {"num_workers": 2, "torch_threads": 1, "resources_per_worker": {"CPU": 1}, "num_cpus": 2}
    rows = [
        _run("plain_loop", _case(base, steps, ray={"torch_threads": 2}), plain=True),
        _run("ray_1_worker", _case(base, steps, ray=one), plain=False),
        _run("ray_2_workers", _case(base, steps, ray=two), plain=False),
    ]
    plain, ray1 = rows[0], rows[1]
    ray1["overhead_vs_plain_per_step"] = round(ray1["seconds_per_step"] / plain["seconds_per_step"] - 1, 4)
    ray1["overhead_vs_plain_wall"] = round(ray1["wall_seconds"] / plain["wall_seconds"] - 1, 4)
    rows[2]["audio_speedup_vs_1_worker"] = round(rows[2]["audio_s_per_s"] / ray1["audio_s_per_s"], 3)
    return rows


def machine() -> dict:
    import torch

    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", default=str(ROOT / "params/train.yaml"))
    p.add_argument("--only", choices=["precision", "ray"], default=None)
    p.add_argument("--steps", type=int, default=150, help="steps per case of the default model")
    p.add_argument("--steps-5x5", type=int, default=30, help="steps per QuartzNet 5x5 case")
    p.add_argument("--out", default=str(ROOT / "bench/results/train.json"))
    args = p.parse_args(argv)
    os.chdir(ROOT)
    base = load_params(args.params, "train")
    result: dict = {"machine": machine(), "params": args.params}
    if args.only in (None, "precision"):
        result["precision"] = precision_cases(base, args.steps_5x5)
    if args.only in (None, "ray"):
        result["ray"] = ray_cases(base, args.steps)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print(f"{'case':16s} {'steps':>5s} {'s/step':>7s} {'audio s/s':>9s} {'loop s':>7s} {'wall s':>7s}")
    for group in ("precision", "ray"):
        for r in result.get(group, []):
            print(
                f"{r['case']:16s} {r['steps']:5d} {r['seconds_per_step']:7.3f} {r['audio_s_per_s']:9.1f} "
                f"{r['train_seconds']:7.1f} {r['wall_seconds']:7.1f}"
            )
    if "ray" in result:
        r1, r2 = result["ray"][1], result["ray"][2]
        print(
            f"Ray Train overhead per step (1 worker vs plain loop): {100 * r1['overhead_vs_plain_per_step']:+.1f}%; "
            f"2 workers vs 1: x{r2['audio_speedup_vs_1_worker']:.2f} audio s/s"
        )
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
