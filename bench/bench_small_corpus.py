"""Small real corpus, leave one speaker out: train on all speakers but one, test on the one never heard.

    python bench/bench_small_corpus.py --corpus ../shared/data/fsdd4 --out bench/results/small_corpus.json
    python bench/bench_small_corpus.py --held-out theo --set augment.spec_augment=null      # one fold, one ablation

The corpus is a folder with ``transcripts.tsv`` (``file``, ``transcript``, ``speaker``, ``index``,
``status`` columns, as ``../shared/data/fsdd4`` has them) and the audio it names. Everything goes
through the project's own stages, as a user's own data would (``python -m tasks.<stage>`` in a
work folder):

1. download, ``source: manifest``: one split per speaker (JSON lines naming the audio in place);
2. prepare with the small-corpus settings of docs/small_corpus.md (8 kHz accepted and resampled,
   clips from 0.1 s);
3. tokenizer (the sentencepiece model is capped to what ten words support);
4. per fold (``folds/<speaker>/``): train with the profile (``--profile``, default
   ``params/profiles/small_corpus.yaml``) on the other speakers' clips with index >= ``--dev-index``
   (the dev split that picks the best model: their clips below it); build the LM stage's n-gram LM
   and lexicon from the fold's train transcripts; evaluate every clip of the held-out speaker,
   greedily and with beam search + that LM (weights tuned on dev).

``--init`` sets ``model.init_from`` (``none``: from scratch); ``--set key=value`` (YAML values)
changes the train section, e.g. ``--set loop.max_epochs=10``. Per-fold and mean WER/CER go to
``--out`` (JSON) and a table is printed; ``--markdown`` appends that table to a file.
"""

from __future__ import annotations

import argparse
import csv
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


def read_corpus(corpus: Path) -> list[dict]:
    """The usable rows of ``transcripts.tsv``: audio path (absolute), text, speaker, index."""
    table = corpus / "transcripts.tsv"
    if not table.is_file():
        raise FileNotFoundError(f"{table}: no transcripts.tsv (columns file, transcript, speaker, index)")
    with open(table, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r.get("status", "ok") == "ok"]
    return [
        {
            "audio_filepath": str((corpus / r["file"]).resolve()),
            "text": r["transcript"],
            "utt_id": Path(r["file"]).stem,
            "speaker": r["speaker"],
            "index": int(r["index"]),
        }
        for r in rows
    ]


def _write_yaml(path: Path, obj: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(obj, sort_keys=False))
    return path


def _stage(work: Path, module: str, *args: str) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        "TQDM_DISABLE": "1",
    }
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", module, *args], cwd=work, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{module} failed ({r.returncode}):\n{(r.stdout + r.stderr)[-6000:]}")
    print(f"  {module}: {time.monotonic() - t0:.0f} s", flush=True)


def prepare(corpus: Path, work: Path, speakers: list[str]) -> None:
    """download (one split per speaker) -> prepare -> tokenizer, once for every fold."""
    if (work / "data" / "tokenizer" / "chars.json").is_file():
        return
    rows = read_corpus(corpus)
    lists = {}
    for spk in speakers:
        path = work / "lists" / f"{spk}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            for r in rows:
                if r["speaker"] == spk:
                    f.write(json.dumps({k: r[k] for k in ("audio_filepath", "text", "utt_id", "speaker")}) + "\n")
        lists[spk] = str(path)
    params = work / "params"
    _write_yaml(params / "download.yaml", {"download": {"source": "manifest", "manifest": {"splits": lists}}})
    prep = yaml.safe_load((ROOT / "params" / "prepare.yaml").read_text())
    prep["prepare"].update(min_sample_rate=8000)  # docs/small_corpus.md: telephone-band recordings accepted
    _write_yaml(params / "prepare.yaml", prep)
    _write_yaml(params / "tokenizer.yaml", yaml.safe_load((ROOT / "params" / "tokenizer.yaml").read_text()))
    _stage(
        work,
        "tasks.download",
        "--params",
        "params/download.yaml",
        "--out",
        "data/raw",
        "--report",
        "reports/download.json",
    )
    _stage(
        work,
        "tasks.prepare",
        "--params",
        "params/prepare.yaml",
        "--index",
        "data/raw/index.jsonl",
        "--out",
        "data/prepared",
        "--report",
        "reports/prepare.json",
        "--no-progress",
    )
    index = {r["utt_id"]: r["index"] for r in rows}
    _fold_lists(work, speakers[0], speakers, 5, index)  # any fold's train list: the text is the same words
    _stage(
        work,
        "tasks.tokenizer",
        "--params",
        "params/tokenizer.yaml",
        "--manifest",
        f"folds/{speakers[0]}/train.jsonl",
        "--out",
        "data/tokenizer",
        "--report",
        "reports/tokenizer.json",
    )


def _fold_lists(
    work: Path, held_out: str, speakers: list[str], dev_index: int, index: dict[str, int]
) -> dict[str, str]:
    """``folds/<held_out>/{train,dev,test}.jsonl`` (audio paths made absolute): the other speakers'
    clips with a corpus index below ``dev_index`` are dev, the rest train; the held-out speaker's are test."""
    prepared = work / "data" / "prepared"
    folder = work / "folds" / held_out
    folder.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    for spk in speakers:
        for line in (prepared / f"{spk}.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            row["audio_filepath"] = str(prepared / row["audio_filepath"])
            split = "test" if spk == held_out else "dev" if index[row["utt_id"]] < dev_index else "train"
            rows[split].append(json.dumps(row) + "\n")
    for split, lines in rows.items():
        (folder / f"{split}.jsonl").write_text("".join(lines), encoding="utf-8")
    return {split: str((folder / f"{split}.jsonl").relative_to(work)) for split in rows}


def _set(section: dict, key: str, value) -> None:
    *path, last = key.split(".")
    d = section
    for k in path:
        if not isinstance(d.get(k), dict):
            d[k] = {}
        d = d[k]
    d[last] = value


def run_fold(work: Path, profile: Path, held_out: str, speakers: list[str], index: dict[str, int], args) -> dict:
    lists = _fold_lists(work, held_out, speakers, args.dev_index, index)
    train = yaml.safe_load(profile.read_text())["train"]
    train["data"].update(train_manifest=lists["train"], dev_manifest=lists["dev"], vocab="data/tokenizer/chars.json")
    init = args.init or train["model"].get("init_from")  # the profile's path is relative to the checkout
    if args.init == "none" or not init:
        train["model"]["init_from"] = None
    else:
        train["model"]["init_from"] = str(Path(init) if args.init else (ROOT / init).resolve())
    train["ray"]["num_workers"] = 0  # the same loop in this process: no Ray start-up per fold
    for kv in args.set:
        k, v = kv.split("=", 1)
        _set(train, k, yaml.safe_load(v))
    name = f"{args.tag}-{held_out}"
    params = _write_yaml(work / "params" / f"train-{name}.yaml", {"train": train})
    trained_before = (work / "models" / name / "model.pt").is_file() and (
        work / "reports" / name / "train.json"
    ).is_file()
    if not (args.reuse and trained_before):
        _stage(
            work,
            "tasks.train",
            "--params",
            str(params),
            "--name",
            name,
            "--out",
            "models",
            "--fresh",
            "--report",
            f"reports/{name}/train.json",
        )
    folder = str(Path(lists["train"]).parent)
    lm = _write_yaml(work / "params" / "lm.yaml", yaml.safe_load((ROOT / "params" / "lm.yaml").read_text()))
    _stage(
        work,
        "tasks.lm",
        "--params",
        str(lm),
        "--manifest-dir",
        folder,
        "--vocab",
        "data/tokenizer/chars.json",
        "--out",
        f"{folder}/lm",
        "--report",
        f"reports/{name}/lm.json",
    )
    beam = yaml.safe_load((ROOT / "params" / "evaluate.yaml").read_text())["evaluate"]["lm"]
    beam.update(dir=f"{folder}/lm", tune_split="dev", tune_utterances=None)
    ev = {
        "evaluate": {
            "model": f"models/{name}/model.pt",
            "manifest_dir": folder,
            "splits": ["test"],
            "batch_seconds": 120,
            "num_workers": 1,
            "lm": beam,
        }
    }
    _write_yaml(work / "params" / f"evaluate-{name}.yaml", ev)
    _stage(
        work,
        "tasks.evaluate",
        "--params",
        f"params/evaluate-{name}.yaml",
        "--out",
        f"reports/{name}/eval",
        "--report",
        f"reports/{name}/evaluate.json",
    )
    trained = json.loads((work / "reports" / name / "train.json").read_text())
    scores = json.loads((work / "reports" / name / "evaluate.json").read_text())
    greedy = scores["test"]  # the evaluate report: {split: {wer, cer, ..., beam: {wer, cer, ...}}, ...}
    beam_scores = greedy.get("beam") or {}
    return {
        "held_out": held_out,
        "wer": greedy["wer"],
        "cer": greedy["cer"],
        "beam_wer": beam_scores.get("wer"),
        "beam_cer": beam_scores.get("cer"),
        "best_dev_wer": trained["best_dev_wer"],
        "steps": trained["steps"],
        "train_seconds": trained["train_seconds"],
    }


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default=str(ROOT.parent / "shared" / "data" / "fsdd4"))
    p.add_argument("--work", default=str(ROOT / "bench" / "results" / "small_corpus_work"))
    p.add_argument("--profile", default=str(ROOT / "params" / "profiles" / "small_corpus.yaml"))
    p.add_argument("--held-out", nargs="*", default=None, help="speakers to hold out, one fold each (default: all)")
    p.add_argument("--dev-index", type=int, default=5, help="clips of the training speakers below it form dev")
    p.add_argument("--init", default=None, help="model.init_from (default: the profile's; none: from scratch)")
    p.add_argument("--set", action="append", default=[], help="train section key=value (YAML), repeatable")
    p.add_argument("--reuse", action="store_true", help="evaluate models/<tag>-<speaker>/ again where trained before")
    p.add_argument("--tag", default="fsdd", help="model name prefix (models/<tag>-<speaker>/)")
    p.add_argument("--out", default=None, help="JSON results")
    p.add_argument("--markdown", default=None, help="append the table to this file")
    args = p.parse_args(argv)

    corpus, work = Path(args.corpus).resolve(), Path(args.work).resolve()
    rows = read_corpus(corpus)
    speakers = sorted({r["speaker"] for r in rows})
    index = {r["utt_id"]: r["index"] for r in rows}
    work.mkdir(parents=True, exist_ok=True)
    print(f"small corpus: {corpus} ({len(speakers)} speakers: {', '.join(speakers)}), work {work}", flush=True)
    prepare(corpus, work, speakers)
    folds = []
    for spk in args.held_out or speakers:
        if spk not in speakers:
            raise SystemExit(f"--held-out {spk}: not a speaker of {corpus} ({speakers})")
        print(f"fold: {spk} held out", flush=True)
        folds.append(run_fold(work, Path(args.profile), spk, speakers, index, args))
        print(f"  {spk}: unseen-speaker greedy WER {folds[-1]['wer']:.4f}", flush=True)
    result = {
        "corpus": str(corpus),
        "profile": str(args.profile),
        "init": args.init,
        "set": args.set,
        "folds": folds,
        "mean_wer": statistics.fmean(f["wer"] for f in folds),
        "mean_cer": statistics.fmean(f["cer"] for f in folds),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "date": time.strftime("%Y-%m-%d"),
    }
    beam = [f["beam_wer"] for f in folds if f["beam_wer"] is not None]
    result["mean_beam_wer"] = statistics.fmean(beam) if len(beam) == len(folds) else None
    table = [
        "| held-out speaker | greedy WER | CER | beam+LM WER | best dev WER (seen speakers) | steps | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    table += [
        f"| {f['held_out']} | {100 * f['wer']:.1f} | {100 * f['cer']:.1f} | {_pct(f['beam_wer'])} | "
        f"{100 * f['best_dev_wer']:.1f} | {f['steps']} | {f['train_seconds']:.0f} |"
        for f in folds
    ]
    table.append(
        f"| **mean** | **{100 * result['mean_wer']:.1f}** | {100 * result['mean_cer']:.1f} | "
        f"**{_pct(result['mean_beam_wer'])}** | | | |"
    )
    print("\n".join(table))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    if args.markdown:
        with open(args.markdown, "a", encoding="utf-8") as f:
            f.write("\n".join(table) + "\n")
    return result


if __name__ == "__main__":
    main()
