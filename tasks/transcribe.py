"""Transcribe audio files with a trained model (greedy CTC, or beam search with an LM: --lm).

    python -m tasks.transcribe --model models/quartznet_tiny/model.pt a.wav b.flac ...
    python -m tasks.transcribe --model models/quartznet_tiny/model.pt --lm data/lm \
        --weights-from reports/evaluate.json a.wav
    python -m tasks.transcribe --model models/quartznet_tiny/model.pt --backend openvino a.wav

``--backend onnxruntime|openvino`` runs the export stage's files (``--exports``, default
``exports/<model folder name>``); features and vocabulary still come from ``model.pt``.
``--backend openvino_wave`` runs the waveform-input graph (``openvino_wave/``): the filterbank is
computed inside OpenVINO, only the audio is read (and resampled) in Python.

Any format, sample rate and channel count soundfile reads; prints ``path<TAB>text``.

A transducer model (family ``rnnt``) decodes greedily, with ``--beam WIDTH``, or streaming::

    python -m tasks.transcribe --model models/rnnt_small/model.pt --stream a.wav   # prints partials
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import tasks.offline  # noqa: F401
from tasks.beam_search import add_lm_args, beam_from_args


def main(argv: list[str] | None = None) -> list[str]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a model.pt written by the train stage")
    p.add_argument("--device", default="cpu")
    p.add_argument("audio", nargs="+", help="audio files")
    p.add_argument("--backend", choices=["torch", "onnxruntime", "openvino", "openvino_wave"], default="torch")
    p.add_argument("--precision", default="fp32", help="fp32 | bf16 (torch, openvino) | fp16w (openvino)")
    p.add_argument("--exports", help="export folder (default: exports/<name of the model's folder>)")
    add_lm_args(p)
    g = p.add_argument_group("transducer (rnnt) models")
    g.add_argument("--stream", action="store_true", help="feed each file in chunks as if live, print partials")
    g.add_argument("--chunk-ms", type=float, help="--stream: audio per piece fed (default: one encoder chunk)")
    g.add_argument("--chunk-frames", type=int, default=10, help="stacked frames per encoder call (even)")
    g.add_argument("--realtime", action="store_true", help="--stream: wait between pieces as live audio would")
    g.add_argument("--beam", type=int, help="beam search of this width instead of greedy (not with --stream)")
    g.add_argument("--max-symbols", type=int, default=5, help="tokens per encoder frame at most")
    args = p.parse_args(argv)
    missing = [a for a in args.audio if not Path(a).is_file()]
    if missing:
        p.error(f"audio file(s) not found: {', '.join(missing)}")
    from asr_core.decoding import transcribe_files
    from asr_core.train.checkpoint import load_model

    model, features, vocab = load_model(args.model, device=args.device)
    if getattr(model, "transducer", False):  # RNN-T: greedy, beam or --stream (tasks/rnnt_transcribe.py)
        from tasks.rnnt_transcribe import transcribe_transducer

        return transcribe_transducer(args, model, features, vocab, p)
    if args.stream or args.beam:
        p.error("--stream / --beam are for transducer (rnnt) models; CTC beam search takes --lm")
    if args.backend != "torch" or args.precision != "fp32":
        from asr_core.export import BackendUnavailable, make_runner

        exports = args.exports or Path("exports") / Path(args.model).parent.name
        try:
            model = make_runner(f"{args.backend}_{args.precision}", model=model, export_dir=exports,
                                device=args.device)
        except (ValueError, FileNotFoundError, BackendUnavailable) as e:
            p.error(str(e))
    inputs = features.cfg
    if getattr(model, "takes_waveform", False):  # the graph computes the filterbank: hand it the samples
        from asr_core.models.wav2vec2 import WaveformConfig

        inputs = WaveformConfig(sample_rate=features.cfg.sample_rate, normalize=False)
    beam = beam_from_args(args, vocab)  # None: greedy
    texts = transcribe_files(model, inputs, vocab, args.audio, device=args.device, beam=beam)
    for path, text in zip(args.audio, texts):
        print(f"{path}\t{text}")
    sys.stdout.flush()
    return texts


if __name__ == "__main__":
    main()
