"""Seeds and ablations of the training recipe: train the default model, evaluate it, tabulate.

    python bench/bench_recipe.py --seeds 1234 1235 1236                      # the default, three seeds
    python bench/bench_recipe.py --label bn-copy --set optim.ema_buffers=copy --seeds 1234
    python bench/bench_recipe.py --label nemo-batches --set data.batch_size=17 \\
        --set data.max_batch_seconds=null --set data.num_buckets=1 --no-beam

Each run trains ``params/train.yaml``'s model with the ``--set`` changes (dotted keys of the train
section, YAML values) and the seed, through the project's own stages (``python -m tasks.train``
then ``python -m tasks.evaluate`` on ``test`` and ``test_unseen_voice``, greedy and, unless
``--no-beam``, beam search with the lm stage's LM). It runs from the repository root on its
prepared corpus (``dvc repro lm`` first); models, checkpoints and reports go under ``--work``.
Runs already in ``--out`` (same label and seed) are kept, so a table can be grown run by run;
``--markdown`` appends the table (mean and spread over seeds per label) to a file.

Each run takes the whole machine (a 2-core CPU runs one training at a time at full speed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SPLITS = ("test", "test_unseen_voice")


def set_dotted(section: dict, key: str, value) -> None:
    """``section[a][b] = value`` for ``key`` "a.b" (intermediate mappings created)."""
    *path, last = key.split(".")
    node = section
    for k in path:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ValueError(f"--set {key}: {k} is not a mapping")
    node[last] = value


def parse_sets(items: list[str]) -> list[tuple[str, object]]:
    out = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected key=value")
        out.append((key, yaml.safe_load(raw)))
    return out


def _stage(module: str, args: list[str], log: Path, work: Path) -> float:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}", "TQDM_DISABLE": "1"}
    t0 = time.monotonic()
    with open(log, "a", encoding="utf-8") as f:
        r = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise RuntimeError(f"{module} failed ({r.returncode}); see {log}")
    return time.monotonic() - t0


def raw_weights(work: Path, name: str) -> Path:
    """``model.pt`` of run ``name`` with its last checkpoint's raw (not averaged) weights."""
    from asr_core.io.torch_files import load_torch_file, save_torch_file

    ckpts = sorted((work / "models" / name / "checkpoints").glob("ckpt-*.pt"))  # the finished run's last
    if not ckpts:
        raise FileNotFoundError(f"no checkpoint of {name} under {work / 'models' / name / 'checkpoints'}")
    model = load_torch_file(work / "models" / name / "model.pt")
    model["model"] = load_torch_file(ckpts[-1])["model"]
    return save_torch_file(model, work / "models" / name / "raw.pt")


def run_one(label: str, seed: int, sets: list[tuple[str, object]], work: Path, beam: bool, reuse: bool) -> dict:
    name = f"{label}-s{seed}"
    train = yaml.safe_load((ROOT / "params" / "train.yaml").read_text())["train"]
    train["seed"] = seed
    for key, value in sets:
        set_dotted(train, key, value)
    evaluate = yaml.safe_load((ROOT / "params" / "evaluate.yaml").read_text())["evaluate"]
    evaluate.update(model=str(work / "models" / name / "model.pt"), splits=list(SPLITS))
    if not beam:
        evaluate["lm"] = None
    params = work / "params" / f"{name}.yaml"
    params.parent.mkdir(parents=True, exist_ok=True)
    params.write_text(yaml.safe_dump({"train": train, "evaluate": evaluate}, sort_keys=False))
    reports = work / "reports" / name
    reports.mkdir(parents=True, exist_ok=True)
    log = reports / "log.txt"
    done = reuse and (reports / "train.json").is_file() and (work / "models" / name / "model.pt").is_file()
    print(f"{name}: {'trained already' if done else 'training'} ({log})", flush=True)
    if not done:
        _stage(
            "tasks.train",
            ["--params", str(params), "--out", str(work / "models"), "--checkpoints", str(work / "checkpoints")]
            + ["--name", name, "--report", str(reports / "train.json"), "--curves", str(reports), "--fresh"],
            log,
            work,
        )
    if not (reuse and (reports / "evaluate.json").is_file()):
        print(f"{name}: evaluating", flush=True)
        _stage(
            "tasks.evaluate",
            ["--params", str(params), "--out", str(reports / "eval"), "--report", str(reports / "evaluate.json")],
            log,
            work,
        )
    # the same run without EMA: the raw weights of the last checkpoint, decoded greedily
    raw_params = work / "params" / f"{name}-raw.yaml"
    raw_eval = {**evaluate, "model": str(raw_weights(work, name)), "lm": None}
    raw_params.write_text(yaml.safe_dump({"evaluate": raw_eval}, sort_keys=False))
    _stage(
        "tasks.evaluate",
        ["--params", str(raw_params), "--out", str(reports / "eval_raw"), "--report", str(reports / "raw.json")],
        log,
        work,
    )
    tr = json.loads((reports / "train.json").read_text())
    ev = json.loads((reports / "evaluate.json").read_text())
    raw = json.loads((reports / "raw.json").read_text())
    row = {
        "label": label,
        "seed": seed,
        "set": {k: v for k, v in sets},
        "steps": tr["steps"],
        "train_seconds": round(tr["train_seconds"], 1),
        "audio_s_per_s": round(tr["audio_s_per_s"], 1),
        "dev_wer": tr["final_dev_wer"],
    }
    for split in SPLITS:
        s = ev[split]
        row[f"{split}_wer"] = s["wer"]
        row[f"{split}_cer"] = s["cer"]
        if "beam" in s:
            row[f"{split}_beam_wer"] = s["beam"]["wer"]
        row[f"raw_{split}_wer"] = raw[split]["wer"]
    print(f"{name}: {json.dumps(row)}", flush=True)
    return row


def _fmt(values: list[float], pct: bool = True) -> str:
    scale = 100.0 if pct else 1.0
    vals = [v * scale for v in values if v is not None]
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.1f}"
    return f"{statistics.mean(vals):.1f} ± {statistics.stdev(vals):.1f}"


def table(rows: list[dict]) -> str:
    labels = list(dict.fromkeys(r["label"] for r in rows))
    head = (
        "| run | seeds | steps / train s | audio s/s | test WER | test_unseen_voice WER / CER "
        "| unseen beam + LM WER | unseen WER, raw weights |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for label in labels:
        rs = [r for r in rows if r["label"] == label]
        seeds = ", ".join(str(r["seed"]) for r in rs)
        lines.append(
            f"| {label} | {seeds} | {rs[0]['steps']} / {_fmt([r['train_seconds'] for r in rs], False)} "
            f"| {_fmt([r['audio_s_per_s'] for r in rs], False)} | {_fmt([r['test_wer'] for r in rs])} "
            f"| {_fmt([r['test_unseen_voice_wer'] for r in rs])} / {_fmt([r['test_unseen_voice_cer'] for r in rs])} "
            f"| {_fmt([r.get('test_unseen_voice_beam_wer') for r in rs])} "
            f"| {_fmt([r.get('raw_test_unseen_voice_wer') for r in rs])} |"
        )
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--label", default="default", help="the row's name in the table")
    p.add_argument("--seeds", type=int, nargs="+", default=[1234])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a train-section change")
    p.add_argument("--no-beam", action="store_true", help="greedy only (skips the LM weight search)")
    p.add_argument("--reuse", action="store_true", help="keep a run's model and reports already in --work")
    p.add_argument("--work", type=Path, default=ROOT / "bench" / "results" / "recipe_work")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "recipe.json")
    p.add_argument("--markdown", type=Path, default=None, help="append the table to this file")
    args = p.parse_args(argv)
    sets = parse_sets(args.set)
    if not (ROOT / "data" / "prepared" / "train.jsonl").is_file():
        raise SystemExit("no prepared corpus: run `dvc repro lm` first")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    result = json.loads(args.out.read_text()) if args.out.is_file() else {"runs": []}
    for seed in args.seeds:
        if any(r["label"] == args.label and r["seed"] == seed for r in result["runs"]):
            print(f"{args.label}-s{seed}: already in {args.out}", flush=True)
            continue
        result["runs"].append(run_one(args.label, seed, sets, work, beam=not args.no_beam, reuse=args.reuse))
        result["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        result["commit"] = commit.stdout.strip()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1))
        tmp.replace(args.out)
    text = table(result["runs"])
    print(text)
    if args.markdown:
        with open(args.markdown, "a", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()
