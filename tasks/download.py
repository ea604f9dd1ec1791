"""Stage 1, download: build or fetch the corpus chosen by ``download.source``.

Writes ``<out>/index.jsonl`` (the source index the prepare stage reads) and a report
with files, bytes and hours per split. Usage::

    python -m tasks.download --params params/download.yaml --out data/raw --report reports/download.json
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import tasks.offline  # noqa: F401
from asr_core.data.items import INDEX_NAME, SourceItem, write_index
from asr_core.data.sources import fetch_source
from tasks.common import load_params, pick, stage_parser, write_report


def measure(items: list[SourceItem], base: Path, progress: bool = True) -> dict:
    """Files, bytes and hours per split (headers only; unreadable files are counted, not fatal)."""
    import soundfile as sf
    from tqdm import tqdm

    per_split: dict[str, dict] = defaultdict(lambda: {"utterances": 0, "seconds": 0.0})
    sizes: dict[Path, int] = {}
    unreadable = 0
    for it in tqdm(items, desc="measure", unit="utt", disable=not progress, mininterval=1.0):
        p = it.resolve_audio(base)
        s = per_split[it.split]
        s["utterances"] += 1
        if p not in sizes:
            sizes[p] = p.stat().st_size if p.exists() else 0
        if it.duration is not None:
            s["seconds"] += it.duration
            continue
        try:
            info = sf.info(str(p))
            s["seconds"] += info.frames / info.samplerate
        except (RuntimeError, OSError, sf.LibsndfileError):
            unreadable += 1
    total_s = sum(s["seconds"] for s in per_split.values())
    return {
        "utterances": len(items),
        "files": len(sizes),
        "bytes": sum(sizes.values()),
        "hours": round(total_s / 3600, 4),
        "unreadable_headers": unreadable,
        "splits": {
            k: {"utterances": v["utterances"], "hours": round(v["seconds"] / 3600, 4)}
            for k, v in sorted(per_split.items())
        },
    }


def run(section: dict, out_dir: Path, progress: bool = True) -> dict:
    source = section.get("source")
    if not source:
        raise ValueError("download.source is required (synthetic, librispeech, commonvoice, tedlium or manifest)")
    options = pick(section, source, "download")
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    items = fetch_source(source, options, out_dir, progress=progress)
    if not items:
        raise ValueError(f"download.source={source!r} produced no utterances; check its options: {options}")
    fetch_s = time.perf_counter() - t0
    summary = {"source": source, "fetch_seconds": round(fetch_s, 2), **measure(items, out_dir, progress)}
    write_index(out_dir / INDEX_NAME, items)
    return summary


def main(argv: list[str] | None = None) -> dict:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--out", default="data/raw")
    p.add_argument("--report", default="reports/download.json")
    args = p.parse_args(argv)
    section = load_params(args.params, "download")
    from tasks.tracking import log_summary_artifact, stage_run

    with stage_run("download", {"download": section}) as tr:
        summary = run(section, Path(args.out), progress=not args.no_progress)
        tr.log_metrics({k: summary[k] for k in ("utterances", "files", "bytes", "hours", "fetch_seconds")})
        tr.set_tags({"source": summary["source"]})
        log_summary_artifact(tr, summary, "download_summary.json")
    write_report(args.report, summary)
    print(
        f"download: {summary['source']}: {summary['utterances']} utterances, {summary['files']} files, "
        f"{summary['bytes'] / 1e6:.1f} MB, {summary['hours']:.2f} h in {summary['fetch_seconds']:.0f} s"
    )
    return summary


if __name__ == "__main__":
    main()
