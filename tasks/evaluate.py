"""Stage 5, evaluate: decode each evaluation split with the model's objective; WER and CER with jiwer.

A CTC model is decoded greedily and, with ``evaluate.lm``, with beam search and the lm stage's LM
(weights tuned on the dev split); a transducer greedily and with beam search
(``evaluate.transducer``), with an alignment picture.

Writes ``reports/evaluate.json`` (declared as DVC metrics: ``dvc metrics show``) and
``reports/eval/<split>.tsv`` (utt_id, reference, hypothesis, word/char errors per
utterance); logs the same to MLflow. Usage::

    python -m tasks.evaluate --params params/evaluate.yaml
"""

from __future__ import annotations

from pathlib import Path

import tasks.offline  # noqa: F401
from tasks.common import load_params, stage_parser, write_report

DEFAULTS = {"batch_seconds": 300.0, "num_workers": 1, "device": "cpu", "max_utterances": None}


def _options(section: dict) -> dict:
    from asr_core.objectives import OBJECTIVES, objective

    own = {k: v for kind in OBJECTIVES for k, v in objective(kind).evaluate_options.items()}
    unknown = sorted(set(section) - {"model", "splits", "manifest_dir", *DEFAULTS, *own})
    if unknown:
        raise ValueError(f"evaluate: unknown key(s) {unknown}")
    return {**DEFAULTS, **own, **section}


def run(section: dict, out_dir: Path) -> dict:
    from asr_core.models.artifact import load_model
    from asr_core.objectives import objective

    opts = _options(section)
    model_path = Path(opts["model"])
    if not model_path.is_file():
        raise FileNotFoundError(f"evaluate.model: {model_path} not found (run the train stage first)")
    from asr_core.objectives.report import split_manifest

    for split in opts["splits"]:  # every split there before any is decoded (a corpus without one fails now)
        split_manifest(opts["manifest_dir"], split, "evaluate.splits")
    model, features, vocab = load_model(model_path, device=opts["device"])
    return objective(model.kind).evaluate(model, features, vocab, opts, out_dir)


def main(argv: list[str] | None = None) -> dict:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--model", help="model.pt to evaluate (overrides evaluate.model)")
    p.add_argument("--out", default="reports/eval", help="folder for the per-utterance TSVs")
    p.add_argument("--report", default="reports/evaluate.json")
    args = p.parse_args(argv)
    section = load_params(args.params, "evaluate")
    if args.model:
        section = {**section, "model": args.model}
    from tasks.tracking import stage_run

    out = Path(args.out)
    with stage_run("evaluate", {"evaluate": section}, label=Path(args.model).parent.name if args.model else None) as tr:
        report = run(section, out)
        tr.log_metrics({k: v for k, v in report.items() if isinstance(v, dict)})
        for split in section["splits"]:
            tr.log_artifact(out / f"{split}.tsv", artifact_path="eval")
        if "beam" in report:  # the LM weights tuned on dev, and the whole grid
            b = report["beam"]
            tr.log_params(
                {"lm_weight": b["lm_weight"], "word_score": b["word_score"], "tune_split": b["tune_split"]},
                prefix="beam.chosen.",
            )
            tr.log_dict(b, "eval/beam_tuning.json")
        for path in report.get("artifacts", []):
            tr.log_artifact(path, artifact_path="eval")
    write_report(args.report, report)
    return report


if __name__ == "__main__":
    main()
