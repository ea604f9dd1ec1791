"""The evaluate stage for a transducer ``model.pt`` (called by tasks/evaluate.py on family ``rnnt``).

Per split: greedy (``evaluate.rnnt.max_symbols``) and beam search (``evaluate.rnnt.beam``)
transcripts, ``reports/eval/<split>.tsv`` and ``<split>.beam.tsv``, WER/CER of both; and
``reports/eval/alignment.png``: the first utterance of the first split's lattice with its best
path, logged to MLflow by :func:`log_transducer`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

RNNT_DEFAULTS = {"max_symbols": 5, "beam": 4, "beam_max_utterances": None, "alignment": True}


def evaluate_transducer(model, features, vocab, opts: dict[str, Any], out_dir: Path, tsv) -> dict[str, Any]:
    """``opts``: the evaluate section with its defaults; ``tsv(rows) -> text`` writes the TSV layout."""
    from asr_core.decoding import utterance_errors
    from asr_core.decoding.rnnt_infer import transcribe_manifest_rnnt
    from asr_core.io.atomic import atomic_write_text

    ropts = {**RNNT_DEFAULTS, **(opts.get("rnnt") or {})}
    unknown = sorted(set(ropts) - set(RNNT_DEFAULTS))
    if unknown:
        raise ValueError(f"evaluate.rnnt: unknown key(s) {unknown}; known: {sorted(RNNT_DEFAULTS)}")
    if opts.get("device", "cpu") != "cpu":
        model = model.to(opts["device"])
    report: dict[str, Any] = {"model": str(opts["model"]), "family": "rnnt",
                              "decoding": {"max_symbols": ropts["max_symbols"], "beam": ropts["beam"]}}
    for split in opts["splits"]:
        manifest = Path(opts["manifest_dir"]) / f"{split}.jsonl"
        if not manifest.is_file():
            raise FileNotFoundError(f"evaluate.splits: no manifest for split {split!r} at {manifest}")
        common = {"max_symbols": int(ropts["max_symbols"]), "batch_seconds": opts["batch_seconds"],
                  "num_workers": opts["num_workers"]}
        limit = opts["max_utterances"]
        beam_limit = ropts["beam_max_utterances"] if ropts["beam_max_utterances"] is not None else limit
        same = ropts["beam"] and beam_limit == limit
        ts, skipped = transcribe_manifest_rnnt(model, features.cfg, vocab, manifest, beam=ropts["beam"] if same else None,
                                               max_utterances=limit, **common)
        bts = ts if same else (transcribe_manifest_rnnt(model, features.cfg, vocab, manifest, beam=ropts["beam"],
                                                        max_utterances=beam_limit, **common)[0]
                               if ropts["beam"] else [])
        report[split] = _score(ts, [t.hyp for t in ts], len(skipped))
        atomic_write_text(out_dir / f"{split}.tsv", tsv(_rows(ts, [t.hyp for t in ts], utterance_errors)))
        line = f"evaluate: {split}: greedy WER {100 * report[split]['wer']:.2f}%  CER {100 * report[split]['cer']:.2f}%"
        if bts:
            report[split]["beam"] = _score(bts, [t.beam_hyp for t in bts], 0)
            report[split]["beam"]["width"] = ropts["beam"]
            atomic_write_text(out_dir / f"{split}.beam.tsv", tsv(_rows(bts, [t.beam_hyp for t in bts], utterance_errors)))
            line += f"; beam {ropts['beam']}: WER {100 * report[split]['beam']['wer']:.2f}%"
        print(line + f"  ({len(ts)} utterances, {len(skipped)} unreadable)")
    if ropts["alignment"] and opts["splits"]:
        png = alignment(model, features, vocab, Path(opts["manifest_dir"]) / f"{opts['splits'][0]}.jsonl",
                        out_dir / "alignment.png")
        report["alignment"] = png is not None
    return report


def _score(ts, hyps, skipped: int) -> dict[str, Any]:
    from asr_core.decoding import corpus_errors

    s = corpus_errors((t.ref, h) for t, h in zip(ts, hyps))
    return {"wer": round(s["wer"], 6), "cer": round(s["cer"], 6), "utterances": s["utterances"],
            "words": s["words"], "skipped": skipped, "audio_hours": round(sum(t.duration for t in ts) / 3600, 4)}


def _rows(ts, hyps, utterance_errors) -> list[list]:
    rows = []
    for t, h in zip(ts, hyps):
        e = utterance_errors(t.ref, h)
        rows.append([t.utt_id, t.ref, h, e.word_errors, e.words, e.char_errors, e.chars])
    return rows


def alignment(model, features, vocab, manifest: Path, out: Path) -> Path | None:
    """The first readable utterance's lattice picture with its reference's best path."""
    import torch

    from asr_core.decoding.rnnt_align import alignment_png, lattice_logprobs
    from asr_core.decoding.rnnt_infer import manifest_loader

    loader, _ = manifest_loader(manifest, features.cfg, vocab, max_utterances=4)
    if loader is None:
        return None
    for b in loader:
        if b["feats"].size(0):
            n = int(b["feat_lens"][0])
            tokens = b["tokens"][0, : int(b["token_lens"][0])].tolist()
            emit, blank = lattice_logprobs(model.cpu(), b["feats"][0], n, tokens)
            pieces = [vocab.piece(i) for i in tokens]
            sub = model.encoder.cfg.subsampling * features.cfg.window_stride
            with torch.no_grad():
                return alignment_png(out, emit, blank, pieces, title=f"{b['utt_ids'][0]}", frame_seconds=sub)
    return None


def log_transducer(tr, report: dict[str, Any], out_dir: Path, splits) -> None:
    """MLflow: the beam TSVs and the alignment picture (the greedy TSVs are logged by evaluate)."""
    for split in splits:
        if (out_dir / f"{split}.beam.tsv").is_file() and "beam" in report.get(split, {}):
            tr.log_artifact(out_dir / f"{split}.beam.tsv", artifact_path="eval")
    if report.get("alignment") and (out_dir / "alignment.png").is_file():
        tr.log_artifact(out_dir / "alignment.png", artifact_path="eval")
