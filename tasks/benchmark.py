"""Benchmark stage: the model's objective's benchmark, its report, and MLflow logging.

    python -m tasks.benchmark --params params/benchmark.yaml --model models/quartznet_tiny/model.pt \
        --exports exports/quartznet_tiny --out reports/benchmark --report reports/benchmark.json
    python -m tasks.benchmark --params params/benchmark.yaml --preset quartznet:15x5 \
        --out bench/results/qn15x5 --report bench/results/qn15x5.json     # random weights, no WER

A CTC model gets the latency grid per backend, WER per backend and training throughput
(``asr_core.objectives.ctc.benchmark``); a transducer the streaming benchmark per backend
(``benchmark.transducer``). Writes ``<out>/report.md``, ``machine.json`` (and for CTC ``cells.csv``
and plots) and the metrics JSON; logs all of them and every cell's numbers to MLflow.
"""

from __future__ import annotations

from pathlib import Path

import tasks.offline
import tasks.threads  # noqa: F401  (before torch: GOMP_SPINCOUNT)
from tasks.common import load_params, stage_parser, write_report


def model_kind(model_path: str | None, preset: str | None) -> str:
    """The objective of ``--model`` (its model file's kind) or of ``--preset family:name`` (the family's)."""
    if preset:
        from asr_core.models import family_kind

        return family_kind(preset.partition(":")[0])
    from asr_core.models.artifact import read_model_file

    if not model_path or not Path(model_path).is_file():
        raise FileNotFoundError(f"benchmark: model {model_path} not found (run the train stage, or pass --preset)")
    return read_model_file(model_path)["kind"]


def run(
    section: dict,
    *,
    model_path: str | None,
    exports: str | None,
    out_dir: str | Path,
    preset: str | None = None,
    log=print,
) -> dict:
    from asr_core.objectives import objective

    kind = model_kind(model_path, preset)
    report = objective(kind).benchmark(
        section, model_path=model_path, exports=exports, out_dir=out_dir, preset=preset, log=log
    )
    return {**report, "kind": kind}


def main(argv: list[str] | None = None) -> dict:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--model", help="model.pt written by the train stage")
    p.add_argument("--exports", help="the export stage's folder (exports/<name>)")
    p.add_argument("--preset", help="family:preset, e.g. quartznet:15x5: a random-weights net instead of --model")
    p.add_argument("--out", default="reports/benchmark", help="folder for the CSV, plots, report.md, machine.json")
    p.add_argument("--report", default="reports/benchmark.json")
    args = p.parse_args(argv)
    if not args.model and not args.preset:
        p.error("give --model (with --exports) or --preset")
    section = load_params(args.params, "benchmark")
    from asr_core.bench.measure import machine_id
    from asr_core.bench.regression import flat_metrics
    from tasks.tracking import stage_run

    out = Path(args.out)
    with stage_run(
        "benchmark", {"benchmark": section}, label=Path(args.model).parent.name if args.model else args.preset
    ) as tr:
        report = run(section, model_path=args.model, exports=args.exports, out_dir=out, preset=args.preset)
        report["mlflow_run_id"] = tr.run_id
        tr.set_tags(
            {
                "bench.machine": machine_id(report["machine"]),
                "bench.model": report["model"],
                "bench.gpu": report["machine"]["gpu"] or "none",
            }
        )
        tr.log_params({"machine": {k: v for k, v in report["machine"].items()}})
        tr.log_metrics(flat_metrics(report))
        tr.log_metrics(
            {
                "train_throughput": {
                    k: {"sequences_per_s": v["sequences_per_s"], "audio_s_per_s": v["audio_s_per_s"]}
                    for k, v in report["train_throughput"].items()
                }
            }
        )
        write_report(args.report, report)
        for f in sorted(out.iterdir()):
            if f.is_file() and not f.name.startswith("."):
                tr.log_artifact(f, artifact_path="benchmark")
        tr.log_artifact(args.report)
    return report


if __name__ == "__main__":
    main()
