"""Transcription with a CTC model: greedy, or beam search with an n-gram LM (``--lm``).

``--backend onnxruntime|openvino`` runs the export stage's files (``--exports``); the features and
vocabulary still come from ``model.pt``. ``--backend openvino_wave`` runs the waveform-input graph:
the filterbank is computed inside OpenVINO, only the audio is read (and resampled) in Python.
"""

from __future__ import annotations

from pathlib import Path

from asr_core.decoding import transcribe_files
from asr_core.objectives.ctc.beam import add_lm_args, beam_from_args, lm_unsupported


def add_transcribe_args(p) -> None:
    """``transcribe``'s CTC options (beam search with an LM)."""
    add_lm_args(p)


def transcribe(args, model, features, vocab, parser) -> list[str]:
    """``path<TAB>text`` per file of ``args.audio``; the transcripts in order."""
    if args.stream or args.beam:
        parser.error("--stream / --beam are for transducer models; CTC beam search takes --lm")
    if args.backend != "torch" or args.precision != "fp32":
        from asr_core.export import BackendUnavailable, make_runner

        exports = args.exports or Path("exports") / Path(args.model).parent.name
        try:
            model = make_runner(f"{args.backend}_{args.precision}", model=model, export_dir=exports, device=args.device)
        except (ValueError, FileNotFoundError, BackendUnavailable) as e:
            parser.error(str(e))
    inputs = features
    if getattr(model, "takes_waveform", False):  # the graph computes the filterbank: hand it the samples
        from asr_core.features.frontends import build_frontend

        inputs = build_frontend("waveform", {"sample_rate": features.cfg.sample_rate, "normalize": False})
    if args.lm and lm_unsupported(vocab):
        parser.error(f"--lm: {lm_unsupported(vocab)}")
    beam = beam_from_args(args, vocab)  # None: greedy
    texts = transcribe_files(model, inputs, vocab, args.audio, device=args.device, beam=beam)
    for path, text in zip(args.audio, texts):
        print(f"{path}\t{text}")
    return texts
