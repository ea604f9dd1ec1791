"""Transcribe audio files with a trained model: greedy, beam search, or streaming, as its objective offers.

    python -m tasks.transcribe --model models/quartznet_tiny/model.pt a.wav b.flac ...
    python -m tasks.transcribe --model models/quartznet_tiny/model.pt --lm data/lm \\
        --weights-from reports/evaluate.json a.wav
    python -m tasks.transcribe --model models/quartznet_tiny/model.pt --backend openvino a.wav
    python -m tasks.transcribe --model models/rnnt_small/model.pt --stream a.wav   # prints partials

CTC models take ``--lm`` (beam search with the lm stage's LM); transducers ``--beam WIDTH`` and
``--stream``. ``--backend onnxruntime|openvino`` runs the export stage's files (``--exports``,
default ``exports/<model folder name>``); ``openvino_wave`` the waveform-input graph of a CTC model.
Any format, sample rate and channel count soundfile reads; prints ``path<TAB>text``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import tasks.offline  # noqa: F401
from asr_core.objectives import OBJECTIVES, objective


def main(argv: list[str] | None = None) -> list[str]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a model.pt written by the train stage")
    p.add_argument("--device", default="cpu")
    p.add_argument("audio", nargs="+", help="audio files")
    p.add_argument("--backend", choices=["torch", "onnxruntime", "openvino", "openvino_wave"], default="torch")
    p.add_argument(
        "--precision",
        default="fp32",
        help="fp32 | bf16 (torch, openvino) | fp16w (openvino, CTC) | int8 (openvino, transducers)",
    )
    p.add_argument("--exports", help="export folder (default: exports/<name of the model's folder>)")
    for kind in OBJECTIVES:
        objective(kind).add_transcribe_args(p)
    args = p.parse_args(argv)
    missing = [a for a in args.audio if not Path(a).is_file()]
    if missing:
        p.error(f"audio file(s) not found: {', '.join(missing)}")
    from asr_core.models.artifact import load_model

    model, features, vocab = load_model(args.model, device=args.device)
    texts = objective(model.kind).transcribe(args, model, features, vocab, p)
    sys.stdout.flush()
    return texts


if __name__ == "__main__":
    main()
