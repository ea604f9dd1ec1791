"""Export of a transducer: three ONNX graphs with state in/out, gated on parity with PyTorch.

Writes ``encoder.onnx``, ``predictor.onnx``, ``joint.onnx`` (state in/out), their OpenVINO IR
under ``openvino/<graph>/``, ``rnnt_export.json`` (shapes the runtime needs) and ``export.json``.
Gates, on the first ``max_utterances`` of ``split``, for onnxruntime and OpenVINO (fp32):

- per graph: max |output - PyTorch's| within ``fp32_max_abs_diff`` (encoder on whole utterances
  with lengths, prediction network along the greedy tokens with its state, joint on every
  (frame, token) pair visited);
- the decoder on the backend gives exactly PyTorch's offline greedy transcripts: streamed
  (default chunk, state carried) for a streaming encoder, offline for any other (a Conformer).

Reduced precision: ``openvino_int8`` (in ``reduced_precision``; a streaming encoder only) writes the
int8-weight graphs of :mod:`asr_core.export.rnnt_int8` under ``openvino_int8/``, gated on WER: the
streamed WER within ``wer_tolerance`` (absolute) of PyTorch's. The CTC variants (bf16, fp16
weights) are recorded as skipped. Published only when every gate passes, as for CTC models (the
export stage publishes).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

BACKENDS = ("onnxruntime_fp32", "openvino_fp32")


def _waves(manifest: Path, sample_rate: int, limit: int | None) -> list[tuple[str, str, torch.Tensor]]:
    from asr_core.data.audio import read_wave
    from asr_core.io.jsonl import read_jsonl

    rows = list(read_jsonl(manifest))[: limit if limit is not None else None]
    return [
        (r.get("utt_id", str(i)), r["text"], read_wave(manifest.parent / r["audio_filepath"], sample_rate))
        for i, r in enumerate(rows)
    ]


@torch.no_grad()
def graph_diffs(torch_be, backend, feats: torch.Tensor, lens: torch.Tensor, tokens: list[int]) -> dict[str, float]:
    """Max |diff| per graph on one utterance (see the module doc)."""
    from asr_core.models.rnnt.frontend import stack_frames

    if torch_be.streaming:  # the state outputs too
        s, s_lens = stack_frames(feats, lens, torch_be.stack)
        ref = torch_be.encode(s, s_lens, torch_be.encoder_state(1))
        got = backend.encode(s, s_lens, backend.encoder_state(1))
        states = [float((r - g).abs().max()) for r, g in zip(ref[2], got[2])]
    else:
        ref, got, states = torch_be.encode_utterances(feats, lens), backend.encode_utterances(feats, lens), []
    d = {"encoder": max([float((ref[0] - got[0]).abs().max()), *states])}
    if not torch.equal(ref[1], got[1]):
        d["encoder"] = float("inf")
    y = torch.tensor([[torch_be.blank, *tokens]]).T  # (U + 1, 1): one step per row, state carried
    st_r, st_b = torch_be.predictor_state(1), backend.predictor_state(1)
    gs, d["predictor"] = [], 0.0
    for u in range(y.size(0)):
        gr, st_r = torch_be.predict(y[u : u + 1], st_r)
        gb, st_b = backend.predict(y[u : u + 1], st_b)
        d["predictor"] = max(d["predictor"], float((gr - gb).abs().max()), float((st_r[0] - st_b[0]).abs().max()))
        gs.append(gr)
    f = ref[0][0]
    g = torch.cat(gs).repeat(f.size(0), 1)
    ff = f.repeat_interleave(len(gs), dim=0)
    d["joint"] = float((torch_be.joint(ff, g) - backend.joint(ff, g)).abs().max())
    return d


def export(model, features, vocab, opts: dict[str, Any], tmp: Path, manifest: Path) -> tuple[dict, dict[str, Any]]:
    """Write the three graphs into ``tmp`` and gate them on ``manifest``: ``(parity by backend, export.json
    fields)``."""
    from asr_core.decoding.rnnt_stream import StreamingTranscriber, TorchBackend, offline_greedy, stream_file
    from asr_core.export.rnnt_onnx import export_rnnt
    from asr_core.export.rnnt_runtime import load_backend, write_meta

    t0 = time.perf_counter()
    export_rnnt(model, tmp, feature_dim=features.feature_dim, opset=int(opts["opset"]))
    write_meta(model, tmp)
    print(f"export: wrote 3 ONNX graphs and their OpenVINO IR in {time.perf_counter() - t0:.1f} s")

    torch_be = TorchBackend(model)
    utts = _waves(manifest, features.cfg.sample_rate, opts["max_utterances"])
    refs = []
    for _, _, w in utts:
        feats, lens = features(w[None], torch.tensor([w.numel()]))
        refs.append((feats, lens, offline_greedy(torch_be, feats, lens)[0]))
    tol = float(opts["fp32_max_abs_diff"])
    parity: dict[str, Any] = {}
    for name in BACKENDS:
        t0 = time.perf_counter()
        backend = load_backend(tmp, name.split("_")[0], threads=int(opts["threads"]))
        diffs = {"encoder": 0.0, "predictor": 0.0, "joint": 0.0}
        differ = 0
        st = StreamingTranscriber(backend, features, vocab) if backend.streaming else None
        for (_, _, w), (feats, lens, ids) in zip(utts, refs):
            for k, v in graph_diffs(torch_be, backend, feats, lens, ids).items():
                diffs[k] = max(diffs[k], v)
            got = list(stream_file(st, w))[-1].text if st else vocab.decode(offline_greedy(backend, feats, lens)[0])
            differ += got != vocab.decode(ids)
        worst = max(diffs.values()) if utts else 0.0
        parity[name] = {
            "passed": worst <= tol and differ == 0,
            "max_abs_diff": worst,
            **{f"{k}_max_abs_diff": v for k, v in diffs.items()},
            "transcripts_differ": differ,
            "utterances": len(utts),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        print(
            f"export: {name}: max |diff| encoder {diffs['encoder']:.2e}, predictor {diffs['predictor']:.2e}, "
            f"joint {diffs['joint']:.2e}; {'streamed' if st else 'offline'} transcripts differing from PyTorch: "
            f"{differ} of "
            f"{len(utts)}: {'passed' if parity[name]['passed'] else 'FAILED'}"
        )
    variants = {"onnxruntime_fp32": "<graph>.onnx", "openvino_fp32": "openvino/<graph>/model.xml"}
    for name in opts["reduced_precision"] or []:
        if name == "openvino_int8" and model.encoder.streaming:
            parity[name] = int8_gate(model, features, vocab, tmp, utts, refs, opts)
            variants[name] = "openvino_int8/<graph>/model.xml (int8 weights, fixed-length encoder chunks)"
        else:
            why = "int8 graphs need a streaming (LSTM) encoder" if name == "openvino_int8" else "CTC models only"
            parity[name] = {"passed": True, "skipped": f"{name}: {why}"}
    doc = {"graphs": "see rnnt_export.json (inputs/outputs, shapes)", "variants": variants}
    return parity, doc


def int8_gate(model, features, vocab, tmp: Path, utts, refs, opts: dict[str, Any]) -> dict[str, Any]:
    """Export the int8 graphs into ``tmp`` and compare their streamed WER with PyTorch's."""
    from asr_core.decoding.metrics import corpus_errors
    from asr_core.decoding.rnnt_stream import DEFAULT_CHUNK_FRAMES, StreamingTranscriber, stream_file
    from asr_core.export.rnnt_int8 import export_int8
    from asr_core.export.rnnt_runtime import load_backend

    t0 = time.perf_counter()
    export_int8(
        model, tmp, feature_dim=features.feature_dim, chunk_frames=DEFAULT_CHUNK_FRAMES, opset=int(opts["opset"])
    )
    st = StreamingTranscriber(load_backend(tmp, "openvino_int8", threads=int(opts["threads"])), features, vocab)
    texts = [
        (text, vocab.decode(ids), list(stream_file(st, w))[-1].text) for (_, text, w), (_, _, ids) in zip(utts, refs)
    ]
    wer_torch = corpus_errors((r, h) for r, h, _ in texts)["wer"] if texts else 0.0
    wer = corpus_errors((r, h) for r, _, h in texts)["wer"] if texts else 0.0
    tol = float(opts["wer_tolerance"])
    result = {
        "passed": abs(wer - wer_torch) <= tol,
        "gate": "wer",
        "wer": wer,
        "wer_torch": wer_torch,
        "wer_change": wer - wer_torch,
        "wer_tolerance": tol,
        "transcripts_differ": sum(a != b for _, a, b in texts),
        "utterances": len(texts),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    print(
        f"export: openvino_int8: streamed WER {100 * wer:.2f}% (PyTorch {100 * wer_torch:.2f}%), "
        f"{result['transcripts_differ']} of {len(texts)} transcripts differ: "
        f"{'passed' if result['passed'] else 'FAILED'}"
    )
    return result
