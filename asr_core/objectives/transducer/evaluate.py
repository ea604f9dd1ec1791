"""Evaluation of a transducer: greedy and beam-search transcripts of each split, and an alignment picture.

Per split: greedy (``evaluate.transducer.max_symbols``) and beam search (``evaluate.transducer.beam``)
transcripts, ``<split>.tsv`` and ``<split>.beam.tsv``, WER/CER of both; and ``alignment.png``: the
first utterance of the first split's lattice with its best path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from asr_core.decoding.rnnt_infer import manifest_loader, transcribe_manifest_rnnt
from asr_core.io.atomic import atomic_write_text
from asr_core.objectives.report import score_rows, split_manifest, split_score, tsv

DEFAULTS = {"max_symbols": 5, "beam": 4, "beam_max_utterances": None, "alignment": True}
OPTIONS: dict[str, Any] = {"transducer": None}  # the evaluate section's transducer keys and their defaults


def evaluate(model, features, vocab, opts: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """The evaluate stage's report for a transducer; ``opts``: the evaluate section with its defaults."""
    ropts = {**DEFAULTS, **(opts.get("transducer") or {})}
    unknown = sorted(set(ropts) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"evaluate.transducer: unknown key(s) {unknown}; known: {sorted(DEFAULTS)}")
    if opts.get("device", "cpu") != "cpu":
        model = model.to(opts["device"])
    report: dict[str, Any] = {
        "model": str(opts["model"]),
        "kind": "transducer",
        "decoding": {"max_symbols": ropts["max_symbols"], "beam": ropts["beam"]},
        "artifacts": [],
    }
    for split in opts["splits"]:
        manifest = split_manifest(opts["manifest_dir"], split, "evaluate.splits")
        common = {
            "max_symbols": int(ropts["max_symbols"]),
            "batch_seconds": opts["batch_seconds"],
            "num_workers": opts["num_workers"],
        }
        limit = opts["max_utterances"]
        beam_limit = ropts["beam_max_utterances"] if ropts["beam_max_utterances"] is not None else limit
        same = ropts["beam"] and beam_limit == limit
        ts, skipped = transcribe_manifest_rnnt(
            model, features, vocab, manifest, beam=ropts["beam"] if same else None, max_utterances=limit, **common
        )
        if same:
            bts = ts
        elif ropts["beam"]:
            bts = transcribe_manifest_rnnt(
                model, features, vocab, manifest, beam=ropts["beam"], max_utterances=beam_limit, **common
            )[0]
        else:
            bts = []
        greedy = [t.hyp for t in ts]
        report[split] = split_score(ts, greedy, len(skipped))
        atomic_write_text(out_dir / f"{split}.tsv", tsv(score_rows(ts, greedy)))
        line = f"evaluate: {split}: greedy WER {100 * report[split]['wer']:.2f}%  CER {100 * report[split]['cer']:.2f}%"
        if bts:
            beamed = [t.beam_hyp for t in bts]
            report[split]["beam"] = {**split_score(bts, beamed, 0), "width": ropts["beam"]}
            atomic_write_text(out_dir / f"{split}.beam.tsv", tsv(score_rows(bts, beamed)))
            report["artifacts"].append(str(out_dir / f"{split}.beam.tsv"))
            line += f"; beam {ropts['beam']}: WER {100 * report[split]['beam']['wer']:.2f}%"
        print(line + f"  ({len(ts)} utterances, {len(skipped)} unreadable)")
    if ropts["alignment"] and opts["splits"]:
        first = Path(opts["manifest_dir"]) / f"{opts['splits'][0]}.jsonl"
        png = alignment(model, features, vocab, first, out_dir / "alignment.png")
        report["alignment"] = png is not None
        if png is not None:
            report["artifacts"].append(str(png))
    return report


def alignment(model, features, vocab, manifest: Path, out: Path) -> Path | None:
    """The first readable utterance's lattice picture with its reference's best path."""
    from asr_core.decoding.rnnt_align import alignment_png, lattice_logprobs

    loader, _ = manifest_loader(manifest, features, vocab, max_utterances=4)
    if loader is None:
        return None
    for b in loader:
        if b["feats"].size(0):
            n = int(b["feat_lens"][0])
            tokens = b["tokens"][0, : int(b["token_lens"][0])].tolist()
            emit, blank = lattice_logprobs(model.cpu(), b["feats"][0], n, tokens)
            pieces = [vocab.piece(i) for i in tokens]
            sub = model.encoder.subsampling * features.cfg.window_stride
            with torch.no_grad():
                return alignment_png(out, emit, blank, pieces, title=f"{b['utt_ids'][0]}", frame_seconds=sub)
    return None
