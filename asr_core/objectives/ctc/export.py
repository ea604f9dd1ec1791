"""Export of a CTC model: ONNX and OpenVINO IR, gated on parity with PyTorch.

Writes ``model.onnx`` (dynamic batch and time, a lengths input), ``openvino/model.xml|.bin`` (fp32
weights; run with an f32 or bf16 inference hint), ``openvino_fp16/`` (fp16 weights, when
``openvino_fp16w`` is among the reduced-precision variants), and for a filterbank model with
``waveform: true`` also ``model_wave.onnx`` and ``openvino_wave/`` (inputs ``audio`` (batch,
samples) and ``audio_lens``: the filterbank in the graph, :mod:`asr_core.export.waveform`).

The gate runs on a manifest: every fp32 backend within ``fp32_max_abs_diff`` of PyTorch's
log-probs with identical greedy transcripts (the waveform graph against PyTorch's filterbank +
network); every reduced-precision variant within ``wer_tolerance`` of PyTorch's WER
(``openvino_wave_bf16`` too, when ``openvino_bf16`` is among them).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from asr_core.export import BackendUnavailable, export_onnx, export_openvino, export_waveform_onnx, make_runner
from asr_core.export.parity import compare, decode_batches, fp32_gate, manifest_batches, reduced_gate, references

FP32_VARIANTS = ("onnxruntime_fp32", "openvino_fp32")
REDUCED_VARIANTS = ("openvino_bf16", "openvino_fp16w")
WAVE_FP32, WAVE_BF16 = "openvino_wave_fp32", "openvino_wave_bf16"  # waveform-input graph (filterbank inside)


def wave_variants(opts: dict, features) -> tuple[str, ...]:
    """The waveform-input runners to export and gate: none for a waveform model (its graph takes audio)."""
    if not opts["waveform"] or features.feature_dim is None:
        return ()
    return (WAVE_FP32, *((WAVE_BF16,) if "openvino_bf16" in (opts["reduced_precision"] or []) else ()))


def write_graphs(model, features, tmp: Path, opts: dict, wave: bool) -> None:
    """The graphs into ``tmp``; ``wave``: the waveform-input one too (``model_wave.onnx``, ``openvino_wave/``)."""
    t0 = time.perf_counter()
    export_onnx(model, tmp / "model.onnx", in_features=features.feature_dim, opset=int(opts["opset"]))
    export_openvino(tmp / "model.onnx", tmp / "openvino")
    if "openvino_fp16w" in (opts["reduced_precision"] or []):
        export_openvino(tmp / "model.onnx", tmp / "openvino_fp16", compress_to_fp16=True)
    if wave:
        export_waveform_onnx(model, features, tmp / "model_wave.onnx", opset=int(opts["opset"]))
        export_openvino(tmp / "model_wave.onnx", tmp / "openvino_wave")
    print(f"export: wrote ONNX and OpenVINO IR in {time.perf_counter() - t0:.1f} s")


def check(model, features, vocab, export_dir: Path, manifest: Path, opts: dict, wave: tuple[str, ...] = ()) -> dict:
    """Every backend's gate result (see the module doc), by runner name."""
    batches = manifest_batches(
        manifest,
        features,
        vocab,
        batch_seconds=float(opts["batch_seconds"]),
        max_utterances=opts["max_utterances"],
        num_workers=int(opts["num_workers"]),
        keep_waves=bool(wave),
    )
    refs = references(batches)
    ref = decode_batches(make_runner("torch_fp32", model=model), batches, vocab, keep_log_probs=True)
    out = {}
    for name in (*FP32_VARIANTS, *(opts["reduced_precision"] or []), *wave):
        if name not in (*FP32_VARIANTS, *REDUCED_VARIANTS, *wave):
            out[name] = {"skipped": f"{name}: transducers only", "passed": True}
            continue
        try:
            runner = make_runner(name, export_dir=export_dir, threads=int(opts["threads"]))
        except BackendUnavailable as e:
            out[name] = {"skipped": str(e), "passed": True}
            print(f"export: {name}: {e}")
            continue
        t0 = time.perf_counter()
        result = compare(ref, decode_batches(runner, batches, vocab, keep_log_probs=True), refs)
        if name in (*FP32_VARIANTS, WAVE_FP32):  # the waveform graph: against torch.stft filterbank + network
            gate = fp32_gate(result, float(opts["fp32_max_abs_diff"]))
        else:
            gate = reduced_gate(result, float(opts["wer_tolerance"]))
        gate["seconds"] = round(time.perf_counter() - t0, 2)
        out[name] = gate
        print(
            f"export: {name}: max |diff| {gate['max_abs_diff']:.2e}, {gate['transcripts_differ']} of "
            f"{gate['utterances']} transcripts differ, WER {100 * gate['wer']:.2f}% (torch "
            f"{100 * gate['wer_torch']:.2f}%): {'passed' if gate['passed'] else 'FAILED'}"
        )
    return out


def export(model, features, vocab, opts: dict, tmp: Path, manifest: Path) -> tuple[dict, dict[str, Any]]:
    """Write the graphs into ``tmp`` and gate them on ``manifest``: ``(parity by backend, export.json fields)``."""
    wave = wave_variants(opts, features)
    write_graphs(model, features, tmp, opts, wave=bool(wave))
    parity = check(model, features, vocab, tmp, manifest, opts, wave)
    doc: dict[str, Any] = {
        "inputs": {
            "features": "float32 (batch, n_mels, time)"
            if features.feature_dim is not None
            else "float32 (batch, samples): the waveform (wav2vec 2.0)",
            "feature_lens": "int64 (batch,)",
        },
        "outputs": {"log_probs": "float32 (batch, time_out, vocab)", "log_prob_lens": "int64 (batch,)"},
        "variants": {
            "onnxruntime_fp32": "model.onnx",
            "openvino_fp32": "openvino/model.xml (f32 hint)",
            "openvino_bf16": "openvino/model.xml (bf16 hint)",
            "openvino_fp16w": "openvino_fp16/model.xml (fp16 weights, f32 hint)",
        },
    }
    if wave:
        doc["waveform"] = {
            "inputs": {
                "audio": f"float32 (batch, samples) at {features.cfg.sample_rate} Hz, zero padded",
                "audio_lens": "int64 (batch,)",
            },
            "outputs": doc["outputs"],
            "features": features.cfg.to_dict(),
            "variants": {
                WAVE_FP32: "openvino_wave/model.xml (f32 hint)",
                WAVE_BF16: "openvino_wave/model.xml (bf16 hint)",
                "onnx": "model_wave.onnx",
            },
        }
    return parity, doc
