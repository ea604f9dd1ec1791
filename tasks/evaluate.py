"""Stage 5, evaluate: greedy CTC decoding of each evaluation split; WER and CER with jiwer.

A transducer ``model.pt`` (family ``rnnt``) is decoded greedily and with beam search instead
(``evaluate.rnnt``, tasks/rnnt_evaluate.py), and an alignment picture is logged.

Writes ``reports/evaluate.json`` (declared as DVC metrics: ``dvc metrics show``) and
``reports/eval/<split>.tsv`` (utt_id, reference, hypothesis, word/char errors per
utterance); logs the same to MLflow. Usage::

    python -m tasks.evaluate --params params/evaluate.yaml
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import tasks.offline  # noqa: F401
from asr_core.io.atomic import atomic_write_text
from tasks.beam_search import beam_evaluation, log_beam
from tasks.common import load_params, stage_parser, write_report

DEFAULTS = {"batch_seconds": 300.0, "num_workers": 1, "device": "cpu", "max_utterances": None, "lm": None}


def _tsv(rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    w.writerow(["utt_id", "reference", "hypothesis", "word_errors", "words", "char_errors", "chars"])
    w.writerows(rows)
    return buf.getvalue()


def run(section: dict, out_dir: Path) -> dict:
    from asr_core.decoding import corpus_errors, transcribe_manifest, utterance_errors
    from asr_core.train.checkpoint import load_model

    unknown = sorted(set(section) - {"model", "splits", "manifest_dir", "rnnt", *DEFAULTS})
    if unknown:
        raise ValueError(f"evaluate: unknown key(s) {unknown}")
    opts = {**DEFAULTS, **section}
    model_path = Path(opts["model"])
    if not model_path.is_file():
        raise FileNotFoundError(f"evaluate.model: {model_path} not found (run the train stage first)")
    model, features, vocab = load_model(model_path, device=opts["device"])
    if getattr(model, "transducer", False):  # RNN-T: greedy + beam search, alignment (tasks/rnnt_evaluate.py)
        from tasks.rnnt_evaluate import evaluate_transducer

        return evaluate_transducer(model, features, vocab, opts, out_dir, _tsv)
    beam = beam_evaluation(opts["lm"], vocab)  # None: greedy only

    def transcribe(split: str, limit: int | None, where: str = "evaluate.splits"):
        manifest = Path(opts["manifest_dir"]) / f"{split}.jsonl"
        if not manifest.is_file():
            raise FileNotFoundError(f"{where}: no manifest for split {split!r} at {manifest}")
        return transcribe_manifest(
            model, features.cfg, vocab, manifest, batch_seconds=opts["batch_seconds"],
            num_workers=opts["num_workers"], max_utterances=limit, device=opts["device"],
            keep_log_probs=beam is not None)

    report: dict = {"model": str(model_path)}
    done: dict = {}
    if beam is not None:  # choose the LM weights on the tune (dev) split before decoding any split
        tune = beam.settings.tune_split
        if tune in opts["splits"]:
            done[tune] = transcribe(tune, opts["max_utterances"])
        report["beam"] = beam.tune((done.get(tune) or transcribe(tune, beam.settings.tune_utterances,
                                                                  "evaluate.lm.tune_split"))[0])
    for split in opts["splits"]:
        transcripts, skipped = done.pop(split, None) or transcribe(split, opts["max_utterances"])
        rows = []
        for t in transcripts:
            e = utterance_errors(t.ref, t.hyp)
            rows.append([t.utt_id, t.ref, t.hyp, e.word_errors, e.words, e.char_errors, e.chars])
        atomic_write_text(out_dir / f"{split}.tsv", _tsv(rows))
        scores = corpus_errors((t.ref, t.hyp) for t in transcripts)
        report[split] = {"wer": round(scores["wer"], 6), "cer": round(scores["cer"], 6),
                         "utterances": scores["utterances"], "words": scores["words"], "skipped": len(skipped),
                         "audio_hours": round(sum(t.duration for t in transcripts) / 3600, 4)}
        print(f"evaluate: {split}: WER {100 * scores['wer']:.2f}%  CER {100 * scores['cer']:.2f}%  "
              f"({scores['utterances']} utterances, {len(skipped)} unreadable)")
        if beam is not None:  # beam + LM beside greedy, same log-probs: <split>.beam.tsv
            beam_rows, report[split]["beam"] = beam.score(transcripts)
            atomic_write_text(out_dir / f"{split}.beam.tsv", _tsv(beam_rows))
    return report


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
    with stage_run("evaluate", {"evaluate": section}) as tr:
        report = run(section, out)
        tr.log_metrics({k: v for k, v in report.items() if isinstance(v, dict)})
        for split in section["splits"]:
            tr.log_artifact(out / f"{split}.tsv", artifact_path="eval")
        log_beam(tr, report, out, section["splits"])
        if report.get("family") == "rnnt":
            from tasks.rnnt_evaluate import log_transducer

            log_transducer(tr, report, out, section["splits"])
    write_report(args.report, report)
    return report


if __name__ == "__main__":
    main()
