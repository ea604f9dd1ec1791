"""Evaluation of a CTC model: greedy transcripts of each split, and beam search with an LM beside them.

With ``evaluate.lm`` set (:mod:`asr_core.objectives.ctc.beam`), the LM weights are tuned on the
tune (dev) split before any split is decoded; each split then gets ``<split>.beam.tsv`` beside
``<split>.tsv``, from the same log-probs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asr_core.decoding import corpus_errors, transcribe_manifest
from asr_core.io.atomic import atomic_write_text
from asr_core.objectives.ctc.beam import beam_evaluation, lm_unsupported
from asr_core.objectives.report import score_rows, split_manifest, tsv

OPTIONS: dict[str, Any] = {"lm": None}  # the evaluate section's CTC keys and their defaults


def evaluate(model, features, vocab, opts: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """The evaluate stage's report for a CTC model; ``opts``: the evaluate section with its defaults."""
    beam = beam_evaluation(opts["lm"], vocab)  # None: greedy only

    def transcribe(split: str, limit: int | None, where: str = "evaluate.splits"):
        return transcribe_manifest(
            model,
            features,
            vocab,
            split_manifest(opts["manifest_dir"], split, where),
            batch_seconds=opts["batch_seconds"],
            num_workers=opts["num_workers"],
            max_utterances=limit,
            device=opts["device"],
            keep_log_probs=beam is not None,
        )

    report: dict[str, Any] = {"model": str(opts["model"]), "kind": "ctc", "artifacts": []}
    if opts["lm"] and beam is None:
        report["beam"] = {"skipped": f"evaluate.lm: {lm_unsupported(vocab)}"}
        print(f"evaluate: beam search skipped: {report['beam']['skipped']}")
    done: dict = {}
    if beam is not None:  # choose the LM weights on the tune (dev) split before decoding any split
        tune = beam.settings.tune_split
        if tune in opts["splits"]:
            done[tune] = transcribe(tune, opts["max_utterances"])
        tuned = done.get(tune) or transcribe(tune, beam.settings.tune_utterances, "evaluate.lm.tune_split")
        report["beam"] = beam.tune(tuned[0])
    for split in opts["splits"]:
        transcripts, skipped = done.pop(split, None) or transcribe(split, opts["max_utterances"])
        atomic_write_text(out_dir / f"{split}.tsv", tsv(score_rows(transcripts, [t.hyp for t in transcripts])))
        scores = corpus_errors((t.ref, t.hyp) for t in transcripts)
        report[split] = {
            "wer": round(scores["wer"], 6),
            "cer": round(scores["cer"], 6),
            "utterances": scores["utterances"],
            "words": scores["words"],
            "skipped": len(skipped),
            "audio_hours": round(sum(t.duration for t in transcripts) / 3600, 4),
        }
        print(
            f"evaluate: {split}: WER {100 * scores['wer']:.2f}%  CER {100 * scores['cer']:.2f}%  "
            f"({scores['utterances']} utterances, {len(skipped)} unreadable)"
        )
        if beam is not None:  # beam + LM beside greedy, same log-probs: <split>.beam.tsv
            beam_rows, report[split]["beam"] = beam.score(transcripts)
            atomic_write_text(out_dir / f"{split}.beam.tsv", tsv(beam_rows))
            report["artifacts"].append(str(out_dir / f"{split}.beam.tsv"))
    return report
