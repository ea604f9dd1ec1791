"""Stage 2, resample/manifest: decode, downmix, resample to 16 kHz, write FLAC and manifests.

Bad items are quarantined in ``<out>/rejected.jsonl`` with a reason. Usage::

    python -m tasks.prepare --params params/prepare.yaml --index data/raw/index.jsonl \
        --out data/prepared --report reports/prepare.json
"""

from __future__ import annotations

from pathlib import Path

import tasks.offline  # noqa: F401
from tasks.common import load_params, stage_parser, write_report


def run(section: dict, index: Path, out_dir: Path, progress: bool = True) -> dict:
    from asr_core.data.prepare import PrepareConfig, prepare_corpus

    try:
        cfg = PrepareConfig.from_dict(dict(section))
    except (TypeError, ValueError) as e:
        raise ValueError(f"prepare: {e}") from e
    if not index.is_file():
        raise FileNotFoundError(f"source index not found: {index} (run the download stage first)")
    return prepare_corpus(index, out_dir, cfg, progress=progress)


def main(argv: list[str] | None = None) -> dict:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--index", default="data/raw/index.jsonl")
    p.add_argument("--out", default="data/prepared")
    p.add_argument("--report", default="reports/prepare.json")
    args = p.parse_args(argv)
    section = load_params(args.params, "prepare")
    from tasks.tracking import log_summary_artifact, stage_run

    out = Path(args.out)
    with stage_run("prepare", {"prepare": section}) as tr:
        summary = run(section, Path(args.index), out, progress=not args.no_progress)
        tr.log_metrics(summary)
        log_summary_artifact(tr, summary, "prepare_summary.json")
        rejected = out / "rejected.jsonl"
        if rejected.is_file() and rejected.stat().st_size:
            tr.log_artifact(rejected)
    write_report(args.report, summary)
    return summary


if __name__ == "__main__":
    main()
