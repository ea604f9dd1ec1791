"""Transcription with a transducer: greedy, beam (``--beam``), or ``--stream``.

``--stream`` feeds each file in chunks as if it were live (``--chunk-ms`` of audio per
piece; ``--realtime`` also waits that long between pieces) and prints every partial
hypothesis as it changes (``partial<TAB>path<TAB>seconds<TAB>text``), then the final line
``path<TAB>text`` as the offline modes do. Backends: PyTorch, or the export stage's graphs
on onnxruntime / OpenVINO (``--backend``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from asr_core.data.audio import read_wave


def make_backend(args, model, export_dir: Path):
    if args.backend == "torch":
        from asr_core.decoding.rnnt_stream import TorchBackend

        return TorchBackend(model)
    from asr_core.export.rnnt_runtime import load_backend

    name = args.backend
    if name == "openvino" and getattr(args, "precision", "fp32") in ("bf16", "int8"):
        name = f"openvino_{args.precision}"  # the bf16 hint, or the int8-weight graphs (openvino_int8/)
    return load_backend(export_dir, name, threads=getattr(args, "threads", None))


def add_transcribe_args(p) -> None:
    """``transcribe``'s transducer options."""
    g = p.add_argument_group("transducer models")
    g.add_argument("--stream", action="store_true", help="feed each file in chunks as if live, print partials")
    g.add_argument("--chunk-ms", type=float, help="--stream: audio per piece fed (default: one encoder chunk)")
    g.add_argument("--chunk-frames", type=int, default=10, help="stacked frames per encoder call (even)")
    g.add_argument("--realtime", action="store_true", help="--stream: wait between pieces as live audio would")
    g.add_argument("--beam", type=int, help="beam search of this width instead of greedy (not with --stream)")
    g.add_argument("--max-symbols", type=int, default=5, help="tokens per encoder frame at most")


def transcribe(args, model, features, vocab, parser) -> list[str]:
    from asr_core.decoding.rnnt_beam import beam_search
    from asr_core.decoding.rnnt_stream import (
        StreamingTranscriber,
        offline_greedy,
    )

    if getattr(args, "lm", None):
        parser.error("--lm: n-gram LM beam search is for CTC models; a transducer takes --beam WIDTH")
    exports = Path(args.exports or Path("exports") / Path(args.model).parent.name)
    try:
        backend = make_backend(args, model, exports)
    except (FileNotFoundError, ValueError, ImportError) as e:
        parser.error(str(e))
    if args.stream and not backend.streaming:
        parser.error("--stream: this transducer's encoder sees whole utterances (no streaming state); drop --stream")
    texts = []
    for path in args.audio:
        wave = read_wave(path, features.cfg.sample_rate)
        if args.stream:
            st = StreamingTranscriber(
                backend, features, vocab, chunk_frames=args.chunk_frames, max_symbols=args.max_symbols
            )
            piece = int(args.chunk_ms * features.cfg.sample_rate / 1000) if args.chunk_ms else st.chunk_samples
            for i in range(0, wave.numel(), piece):
                t0 = time.monotonic()
                for p in st.accept(wave[i : i + piece]):
                    print(f"partial\t{path}\t{p.audio_seconds:.2f}\t{p.text}", flush=True)
                if args.realtime:
                    time.sleep(max(0.0, piece / features.cfg.sample_rate - (time.monotonic() - t0)))
            text = st.finish().text
        else:
            feats, lens = features(wave[None], torch.tensor([wave.numel()]))
            if args.beam:
                f, f_lens = backend.encode_utterances(feats, lens)
                ids = beam_search(backend, f[0, : int(f_lens[0])], args.beam, args.max_symbols)
            else:
                ids = offline_greedy(backend, feats, lens, args.max_symbols)[0]
            text = vocab.decode(ids)
        texts.append(text)
        print(f"{path}\t{text}")
    sys.stdout.flush()
    return texts
