"""Stage 3, tokenizer: the CTC character vocabulary and a sentencepiece model on the train text.

A corpus whose text supports fewer sentencepiece pieces than ``vocab_size`` (a few distinct words)
gets the largest model it supports, and the report says so (``spm_vocab_capped``); the character
vocabulary, all a CTC model needs, never depends on the corpus size.

Usage::

    python -m tasks.tokenizer --params params/tokenizer.yaml --manifest data/prepared/train.jsonl \
        --out data/tokenizer --report reports/tokenizer.json
"""

from __future__ import annotations

from pathlib import Path

import tasks.offline  # noqa: F401
from asr_core.io.jsonl import read_jsonl
from asr_core.text import CharVocab
from asr_core.tokenizer import SentencePieceConfig, train_sentencepiece
from tasks.common import load_params, stage_parser, write_report


def run(section: dict, manifest: Path, out_dir: Path) -> dict:
    if not manifest.is_file():
        raise FileNotFoundError(f"train manifest not found: {manifest} (run the prepare stage first)")
    try:
        cfg = SentencePieceConfig.from_dict(dict(section.get("sentencepiece") or {}))
    except (TypeError, ValueError) as e:
        raise ValueError(f"tokenizer.sentencepiece: {e}") from e
    texts = [row["text"] for row in read_jsonl(manifest)]
    if not texts:
        raise ValueError(f"{manifest}: no utterances to train the tokenizer on")
    vocab = CharVocab()
    for i, t in enumerate(texts):  # the prepare stage guarantees this; fail loudly if not
        try:
            vocab.encode(t)
        except ValueError as e:
            raise ValueError(f"{manifest}: line {i + 1}: {e}") from e
    vocab.save(out_dir / "chars.json")
    model = train_sentencepiece(texts, out_dir / "spm", cfg)

    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model))
    pieces = sum(len(sp.encode(t)) for t in texts)
    words = sum(len(t.split()) for t in texts)
    capped = sp.get_piece_size() < cfg.vocab_size
    if capped:
        print(
            f"tokenizer: the train text supports at most {sp.get_piece_size()} sentencepiece pieces; "
            f"built that many instead of tokenizer.sentencepiece.vocab_size={cfg.vocab_size} "
            f"(cap_to_corpus: false makes this an error)"
        )
    return {
        "texts": len(texts),
        "chars_vocab_size": len(vocab.symbols),
        "ctc_outputs": vocab.num_outputs,
        "spm_vocab_size": sp.get_piece_size(),
        "spm_vocab_size_requested": cfg.vocab_size,
        "spm_vocab_capped": capped,
        "spm_model_type": cfg.model_type,
        "spm_pieces_per_word": round(pieces / max(words, 1), 4),
        "unk_rate": round(sum(sp.encode(t).count(sp.unk_id()) for t in texts) / max(pieces, 1), 6),
    }


def main(argv: list[str] | None = None) -> dict:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--manifest", default="data/prepared/train.jsonl")
    p.add_argument("--out", default="data/tokenizer")
    p.add_argument("--report", default="reports/tokenizer.json")
    args = p.parse_args(argv)
    section = load_params(args.params, "tokenizer")
    from tasks.tracking import log_summary_artifact, stage_run

    out = Path(args.out)
    with stage_run("tokenizer", {"tokenizer": section}) as tr:
        summary = run(section, Path(args.manifest), out)
        tr.log_metrics(summary)
        for name in ("chars.json", "spm.model", "spm.vocab"):
            tr.log_artifact(out / name, artifact_path="tokenizer")
        log_summary_artifact(tr, summary, "tokenizer_summary.json")
    write_report(args.report, summary)
    print(
        f"tokenizer: {summary['ctc_outputs']} CTC outputs, sentencepiece {summary['spm_model_type']} "
        f"{summary['spm_vocab_size']} pieces, {summary['spm_pieces_per_word']} pieces/word"
    )
    return summary


if __name__ == "__main__":
    main()
