"""Transcribe audio files with a trained model (greedy CTC).

    python -m tasks.transcribe --model models/quartznet_tiny/model.pt a.wav b.flac ...

Any format, sample rate and channel count soundfile reads; prints ``path<TAB>text``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import tasks.offline  # noqa: F401


def main(argv: list[str] | None = None) -> list[str]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a model.pt written by the train stage")
    p.add_argument("--device", default="cpu")
    p.add_argument("audio", nargs="+", help="audio files")
    args = p.parse_args(argv)
    missing = [a for a in args.audio if not Path(a).is_file()]
    if missing:
        p.error(f"audio file(s) not found: {', '.join(missing)}")
    from asr_core.decoding import transcribe_files
    from asr_core.train.checkpoint import load_model

    model, features, vocab = load_model(args.model, device=args.device)
    texts = transcribe_files(model, features.cfg, vocab, args.audio, device=args.device)
    for path, text in zip(args.audio, texts):
        print(f"{path}\t{text}")
    sys.stdout.flush()
    return texts


if __name__ == "__main__":
    main()
