"""The benchmark of a transducer, per backend: streaming for a streaming encoder, offline for any other.

Per backend in ``benchmark.transducer.backends`` (torch, onnxruntime, openvino, openvino_bf16,
openvino_int8: the export's int8-weight graphs; CPU, ``threads``):
the streaming benchmark of :mod:`asr_core.bench.rnnt_stream` over the first
``benchmark.transducer.max_utterances`` of the ``benchmark.wer`` split, with the default chunk:
WER, mean encoder / prediction / joint time per call, audio s/s, chunk latency p50/p99.
Cells are ``cpu/<backend>/stream`` (``rtfx`` = audio s/s, so the nightly regression rules
apply; ``cpu/<backend>/offline`` for a whole-utterance encoder such as a Conformer);
each N > 1 in ``benchmark.transducer.streams`` adds ``cpu/<backend>/stream_x<N>``: N utterances streamed
at once, the encoder batched across them (audio s/s of all N together, each chunk's latency its round's);
``wer`` per ``cpu/<backend>``. ``--preset rnnt:e6d2`` times random weights (2048
outputs, edgedict's vocabulary size, the blank's bias raised so that the search emits few tokens,
as a trained model's does) on the same audio, without WER; ``predictor_calls`` shows how many.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch

RNNT_DEFAULTS = {
    "backends": ["torch", "onnxruntime", "openvino"],
    "chunk_frames": 10,
    "max_symbols": 5,
    "max_utterances": 50,
    "warmup": 1,
    "streams": [1],  # streams at once: > 1 batches the encoder across them (bench.rnnt_stream.multistream_benchmark)
}


def _table(report: dict) -> str:
    rows = [
        "| backend | streams | WER | encoder ms/call | prediction ms/call | joint ms/call | audio s/s | "
        "chunk p50 ms | chunk p99 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for cell, m in report["cells"].items():
        wer = f"{100 * m['wer']:.2f}%" if m.get("wer") is not None else "-"
        rows.append(
            f"| {cell.split('/')[1]} | {m.get('streams', 1)} | {wer} | {m['encoder_ms']} | {m['predictor_ms']} | {m['joint_ms']} | "
            f"{m['audio_s_per_s']} | {m['chunk_p50_ms']} | {m['chunk_p99_ms']} |"
        )
    return "\n".join(rows) + "\n"


def benchmark(
    section: dict,
    *,
    model_path: str | None,
    exports: str | None,
    out_dir: str | Path,
    preset: str | None = None,
    log=print,
) -> dict[str, Any]:
    from asr_core.bench.measure import machine_facts
    from asr_core.bench.rnnt_stream import IdVocab, multistream_benchmark, offline_benchmark, stream_benchmark
    from asr_core.data.audio import read_wave
    from asr_core.decoding.rnnt_stream import TorchBackend
    from asr_core.export.rnnt_runtime import load_backend
    from asr_core.io.atomic import atomic_write_text
    from asr_core.io.jsonl import read_jsonl

    opts = {**RNNT_DEFAULTS, **(section.get("transducer") or {})}
    unknown = sorted(set(opts) - set(RNNT_DEFAULTS))
    if unknown:
        raise ValueError(f"benchmark.transducer: unknown key(s) {unknown}; known: {sorted(RNNT_DEFAULTS)}")
    streams = opts["streams"] if isinstance(opts["streams"], list) else [opts["streams"]]
    if not streams or any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in streams):
        raise ValueError(f"benchmark.transducer.streams: a list of stream counts >= 1, got {opts['streams']!r}")
    threads = int(section.get("threads", 2))
    torch.set_num_threads(threads)
    w = {"manifest_dir": "data/prepared", "split": "test", **(section.get("wer") or {})}
    manifest = Path(w["manifest_dir"]) / f"{w['split']}.jsonl"
    if not manifest.is_file():
        raise FileNotFoundError(f"benchmark.wer: no manifest for split {w['split']!r} at {manifest}")
    with tempfile.TemporaryDirectory(prefix="asr-bench-rnnt-") as tmp:
        if preset:
            from asr_core.export.rnnt_onnx import export_rnnt
            from asr_core.export.rnnt_runtime import write_meta
            from asr_core.models import build_model
            from asr_core.models.rnnt.features import RNNTFilterbank, rnnt_features_config

            name = preset.partition(":")[2]
            model = build_model("rnnt", name, 2048).eval()
            with torch.no_grad():  # random weights would emit up to max_symbols tokens on every frame: make
                model.joint.fc2.bias[model.blank] += 8.0  # the search mostly blank, as a trained model's is
            features, vocab, what = (
                RNNTFilterbank(rnnt_features_config()).eval(),
                IdVocab(),
                f"rnnt {name} (random weights)",
            )
            if set(opts["backends"]) - {"torch"}:
                export_rnnt(model, tmp, feature_dim=features.feature_dim)
                write_meta(model, tmp)
            if "openvino_int8" in opts["backends"]:
                from asr_core.export.rnnt_int8 import export_int8

                export_int8(model, tmp, feature_dim=features.feature_dim, chunk_frames=int(opts["chunk_frames"]))
            export_dir = Path(tmp)
        else:
            from asr_core.models.artifact import load_model

            model, features, vocab = load_model(model_path)
            what, export_dir = str(model_path), Path(exports) if exports else None
            if set(opts["backends"]) - {"torch"} and (export_dir is None or not export_dir.is_dir()):
                raise FileNotFoundError(f"benchmark: export folder {exports} not found (run the export stage)")
        rows = list(read_jsonl(manifest))[: opts["max_utterances"]]
        utts = [
            (read_wave(manifest.parent / r["audio_filepath"], features.cfg.sample_rate), "" if preset else r["text"])
            for r in rows
        ]
        cells, wer, skipped = {}, {}, {}
        for name in opts["backends"]:
            try:
                backend = TorchBackend(model) if name == "torch" else load_backend(export_dir, name, threads=threads)
            except (FileNotFoundError, RuntimeError) as e:  # no int8 graphs in this export; no bf16 on this CPU
                skipped[f"cpu/{name}"] = str(e)
                log(f"benchmark: {name}: skipped: {e}")
                continue
            common = {"max_symbols": int(opts["max_symbols"]), "warmup": int(opts["warmup"])}
            runs = {}
            if not backend.streaming:
                runs[f"cpu/{name}/offline"] = offline_benchmark(backend, features, vocab, utts, **common)
            else:
                common["chunk_frames"] = int(opts["chunk_frames"])
                for n in streams:
                    if n == 1:
                        runs[f"cpu/{name}/stream"] = stream_benchmark(backend, features, vocab, utts, **common)
                    else:
                        runs[f"cpu/{name}/stream_x{n}"] = multistream_benchmark(
                            backend, features, vocab, utts, streams=n, **common
                        )
            for cell, m in runs.items():
                cells[cell] = m
                if "wer" in m and cell.endswith(("/stream", "/offline")):
                    wer[f"cpu/{name}"] = m["wer"]
                log(
                    f"benchmark: {cell.partition('/')[2]}: {m['audio_s_per_s']} audio s/s, encoder {m['encoder_ms']} "
                    f"ms, prediction {m['predictor_ms']} ms, joint {m['joint_ms']} ms per call, chunk p50 "
                    f"{m['chunk_p50_ms']} ms p99 {m['chunk_p99_ms']} ms"
                    + (f", WER {100 * m['wer']:.2f}%" if "wer" in m else "")
                )
    report = {
        "model": what,
        "preset": preset,
        "machine": machine_facts(),
        "threads": threads,
        "split": w["split"],
        "stream": {k: opts[k] for k in ("chunk_frames", "max_symbols", "max_utterances")} | {"streams": streams},
        "cells": cells,
        "wer": wer,
        "skipped": skipped,
        "train_throughput": {},
    }
    out = Path(out_dir)
    atomic_write_text(
        out / "report.md",
        f"# Transducer benchmark\n\n{what}, {threads} threads, "
        f"{len(utts)} utterances of {w['split']}\n\n" + _table(report),
    )
    atomic_write_text(out / "machine.json", json.dumps(report["machine"], indent=2) + "\n")
    return report
