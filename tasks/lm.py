"""Stage lm: a word n-gram language model (ARPA) and the lexicon for CTC beam search.

Builds an interpolated modified Kneser-Ney model of order ``lm.order`` from the train
transcripts (or ``lm.text``), or brings in an existing ARPA / KenLM binary (``lm.arpa``);
writes ``<out>/lm.arpa`` (or ``lm.bin``) and ``<out>/lexicon.txt`` (every LM word spelled
in the CTC character vocabulary). Usage::

    python -m tasks.lm --params params/lm.yaml --manifest-dir data/prepared \\
        --vocab data/tokenizer/chars.json --out data/lm --report reports/lm.json
"""

from __future__ import annotations

import time
from pathlib import Path

import tasks.offline  # noqa: F401
from asr_core.io.jsonl import read_jsonl
from tasks.common import load_params, stage_parser, write_report

DEFAULTS = {"order": 3, "text": None, "arpa": None, "vocabulary": None, "eval_splits": ["dev"]}


def _sentences(section: dict, manifest_dir: Path) -> tuple[list[str], str]:
    from asr_core.text.normalize import normalize_text

    if section["text"]:
        path = Path(section["text"])
        if not path.is_file():
            raise FileNotFoundError(f"lm.text: {path} not found")
        with open(path, encoding="utf-8") as f:
            return [normalize_text(line) for line in f], str(path)
    manifest = manifest_dir / "train.jsonl"
    if not manifest.is_file():
        raise FileNotFoundError(f"lm: train manifest {manifest} not found (run the prepare stage, or set lm.text)")
    return [row["text"] for row in read_jsonl(manifest)], str(manifest)


def _vocabulary_words(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"lm.vocabulary: {path} not found")
    with open(path, encoding="utf-8") as f:
        return [line.split()[0] for line in f if line.split()]


def run(section: dict, manifest_dir: Path, vocab_path: Path, out_dir: Path) -> dict:
    from asr_core.lm import (
        build_lexicon,
        count_ngrams,
        estimate_kneser_ney,
        install_lm,
        read_arpa_unigrams,
        write_arpa,
        write_lexicon,
    )
    from asr_core.text import CharVocab

    unknown = sorted(set(section) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"lm: unknown key(s) {unknown}; known: {sorted(DEFAULTS)}")
    opts = {**DEFAULTS, **section}
    if not vocab_path.is_file():
        raise FileNotFoundError(f"character vocabulary {vocab_path} not found (run the tokenizer stage first)")
    vocab = CharVocab.load(vocab_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    report: dict = {}
    model = None
    if opts["arpa"]:
        lm_path = install_lm(opts["arpa"], out_dir)
        if lm_path.name == "lm.bin":
            if not opts["vocabulary"]:
                raise ValueError(f"lm.arpa {opts['arpa']} is a KenLM binary: set lm.vocabulary to a file of its words")
            words = _vocabulary_words(Path(opts["vocabulary"]))
        else:
            words = read_arpa_unigrams(lm_path)
        report.update(source=str(opts["arpa"]))
    else:
        order = opts["order"]
        if not isinstance(order, int) or not 1 <= order <= 6:
            raise ValueError(f"lm.order must be an int in 1..6, got {order!r}")
        sentences, source = _sentences(opts, manifest_dir)
        counts = count_ngrams(sentences, order)
        model, discounts = estimate_kneser_ney(counts)
        lm_path = write_arpa(model, out_dir / "lm.arpa")
        words = sorted(model.vocab)
        report.update(
            source=source,
            order=order,
            sentences=counts.sentences,
            tokens=counts.tokens,
            ngrams=model.ngram_counts(),
            discounts=[d.to_dict() for d in discounts],
        )
    for other in {"lm.arpa", "lm.bin"} - {lm_path.name}:  # a stale file of the other kind would be ambiguous
        (out_dir / other).unlink(missing_ok=True)
    lexicon, rejected = build_lexicon(words, vocab)
    write_lexicon(lexicon, out_dir / "lexicon.txt")
    report.update(
        lm_file=lm_path.name,
        lm_bytes=lm_path.stat().st_size,
        lexicon_words=len(lexicon),
        lexicon_rejected=len(rejected),
        lexicon_rejected_examples=rejected[:20],
        build_seconds=round(time.perf_counter() - t0, 2),
    )
    spelled = {"".join(s) for s in lexicon.values()}
    for split in opts["eval_splits"]:
        manifest = manifest_dir / f"{split}.jsonl"
        if not manifest.is_file():
            raise FileNotFoundError(f"lm.eval_splits: no manifest for split {split!r} at {manifest}")
        texts = [row["text"] for row in read_jsonl(manifest)]
        n_words = sum(len(t.split()) for t in texts)
        oov = sum(w not in spelled for t in texts for w in t.split())
        entry = {"words": n_words, "oov_rate": round(oov / max(n_words, 1), 6)}
        if model is not None:
            entry["perplexity"] = round(model.perplexity(texts)["perplexity"], 4)
        report[split] = entry
    return report


def main(argv: list[str] | None = None) -> dict:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--manifest-dir", default="data/prepared", help="folder with <split>.jsonl manifests")
    p.add_argument("--vocab", default="data/tokenizer/chars.json", help="the CTC character vocabulary")
    p.add_argument("--out", default="data/lm")
    p.add_argument("--report", default="reports/lm.json")
    args = p.parse_args(argv)
    section = load_params(args.params, "lm")
    from tasks.tracking import log_summary_artifact, stage_run

    out = Path(args.out)
    with stage_run("lm", {"lm": section}) as tr:
        report = run(section, Path(args.manifest_dir), Path(args.vocab), out)
        tr.log_metrics({k: v for k, v in report.items() if isinstance(v, (int, float, dict))})
        tr.log_artifact(out / "lexicon.txt", artifact_path="lm")
        log_summary_artifact(tr, report, "lm_summary.json")
    write_report(args.report, report)
    ppl = {s: report[s].get("perplexity") for s in section.get("eval_splits", DEFAULTS["eval_splits"])}
    print(
        f"lm: {report['lm_file']} ({report.get('ngrams', 'existing')} n-grams), "
        f"{report['lexicon_words']} lexicon words, perplexity {ppl}"
    )
    return report


if __name__ == "__main__":
    main()
