"""Export stage: ONNX and OpenVINO IR of a trained CTC model, gated on parity with PyTorch.

A transducer ``model.pt`` (family ``rnnt``) is exported as three graphs with state in/out instead
(tasks/rnnt_export.py: per-graph parity and streamed transcripts equal to PyTorch's).

    python -m tasks.export --params params/export.yaml --model models/quartznet_tiny/model.pt \
        --out exports/quartznet_tiny --report reports/export.json

Writes ``<out>/model.onnx`` (dynamic batch and time, a lengths input), ``<out>/openvino/model.xml|.bin``
(fp32 weights; run with an f32 or bf16 inference hint), ``<out>/openvino_fp16/`` (fp16 weights,
when ``openvino_fp16w`` is among the reduced-precision variants), for a filterbank CTC model
(QuartzNet, Jasper) with ``waveform: true`` also ``<out>/model_wave.onnx`` and
``<out>/openvino_wave/`` (inputs ``audio`` (batch, samples) and ``audio_lens``: the filterbank in the
graph, asr_core/export/waveform.py), and ``<out>/export.json`` (what each file is). The gate runs on
the test split: every fp32 backend within ``fp32_max_abs_diff`` of PyTorch's log-probs with identical
greedy transcripts (the waveform graph against PyTorch's filterbank + network); every reduced-precision variant within ``wer_tolerance`` of PyTorch's WER
(``openvino_wave_bf16`` too, when ``openvino_bf16`` is among them). The exports are built in a
temporary folder and moved to ``<out>`` only when every gate passes; a failed gate writes the report
and fails the stage.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import tasks.offline  # noqa: F401
from tasks.common import load_params, stage_parser, write_report

FP32_VARIANTS = ("onnxruntime_fp32", "openvino_fp32")
REDUCED_VARIANTS = ("openvino_bf16", "openvino_fp16w")
WAVE_FP32, WAVE_BF16 = "openvino_wave_fp32", "openvino_wave_bf16"  # waveform-input graph (filterbank inside)
DEFAULTS = {"opset": 17, "manifest_dir": "data/prepared", "split": "test", "max_utterances": None,
            "batch_seconds": 120.0, "num_workers": 1, "threads": 2, "fp32_max_abs_diff": 1e-3,
            "reduced_precision": list(REDUCED_VARIANTS), "wer_tolerance": 0.005, "waveform": True}


class ParityError(RuntimeError):
    """A backend failed the parity gate: its exports are not published."""


def _options(section: dict) -> dict:
    unknown = sorted(set(section) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"export: unknown key(s) {unknown}; known: {sorted(DEFAULTS)}")
    opts = {**DEFAULTS, **section}
    bad = sorted(set(opts["reduced_precision"] or []) - set(REDUCED_VARIANTS))
    if bad:
        raise ValueError(f"export.reduced_precision: unknown variant(s) {bad}; known: {list(REDUCED_VARIANTS)}")
    if not float(opts["fp32_max_abs_diff"]) > 0 or float(opts["wer_tolerance"]) < 0:
        raise ValueError("export.fp32_max_abs_diff must be > 0 and export.wer_tolerance >= 0")
    if not isinstance(opts["waveform"], bool):
        raise ValueError(f"export.waveform must be true or false, got {opts['waveform']!r}")
    return opts


def _wave_variants(opts: dict, features) -> tuple[str, ...]:
    """The waveform-input runners to export and gate: none for wav2vec 2.0 (its graph takes audio already)."""
    if not opts["waveform"] or not hasattr(features.cfg, "n_mels"):
        return ()
    return (WAVE_FP32, *((WAVE_BF16,) if "openvino_bf16" in (opts["reduced_precision"] or []) else ()))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_exports(model, features, tmp: Path, opts: dict, wave: bool) -> dict[str, str]:
    """The graphs into ``tmp``; ``wave``: the waveform-input one too (``model_wave.onnx``, ``openvino_wave/``)."""
    from asr_core.export import export_onnx, export_openvino, export_waveform_onnx

    t0 = time.perf_counter()
    in_features = getattr(features.cfg, "n_mels", None)  # None: waveform in (wav2vec 2.0)
    export_onnx(model, tmp / "model.onnx", in_features=in_features, opset=int(opts["opset"]))
    export_openvino(tmp / "model.onnx", tmp / "openvino")
    if "openvino_fp16w" in (opts["reduced_precision"] or []):
        export_openvino(tmp / "model.onnx", tmp / "openvino_fp16", compress_to_fp16=True)
    if wave:
        export_waveform_onnx(model, features, tmp / "model_wave.onnx", opset=int(opts["opset"]))
        export_openvino(tmp / "model_wave.onnx", tmp / "openvino_wave")
    print(f"export: wrote ONNX and OpenVINO IR in {time.perf_counter() - t0:.1f} s")
    return {p.relative_to(tmp).as_posix(): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}


def _check(model, features, vocab, export_dir: Path, opts: dict, wave: tuple[str, ...] = ()) -> dict:
    from asr_core.export import BackendUnavailable, make_runner
    from asr_core.export.parity import compare, decode_batches, fp32_gate, manifest_batches, reduced_gate, references

    manifest = Path(opts["manifest_dir"]) / f"{opts['split']}.jsonl"
    if not manifest.is_file():
        raise FileNotFoundError(f"export.split: no manifest for split {opts['split']!r} at {manifest}")
    batches = manifest_batches(manifest, features.cfg, vocab, batch_seconds=float(opts["batch_seconds"]),
                               max_utterances=opts["max_utterances"], num_workers=int(opts["num_workers"]),
                               keep_waves=bool(wave))
    refs = references(batches)
    ref = decode_batches(make_runner("torch_fp32", model=model), batches, vocab, keep_log_probs=True)
    out = {}
    for name in (*FP32_VARIANTS, *(opts["reduced_precision"] or []), *wave):
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
        print(f"export: {name}: max |diff| {gate['max_abs_diff']:.2e}, {gate['transcripts_differ']} of "
              f"{gate['utterances']} transcripts differ, WER {100 * gate['wer']:.2f}% (torch "
              f"{100 * gate['wer_torch']:.2f}%): {'passed' if gate['passed'] else 'FAILED'}")
    return out


@contextlib.contextmanager
def staged(out_dir: Path) -> Iterator[Path]:
    """The staging folder ``exports/.<name>.partial``, emptied before and removed after."""
    tmp = out_dir.parent / f".{out_dir.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(tmp: Path, out_dir: Path, manifest: dict, passed: bool) -> None:
    """Write ``export.json`` into the staging folder; it replaces ``out_dir`` only when every gate passed."""
    (tmp / "export.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if passed:
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)


def run(section: dict, model_path: str | Path, out_dir: str | Path) -> dict:
    """Export, check, and publish ``out_dir`` when every gate passes; the report either way."""
    import torch

    from asr_core.train.checkpoint import load_model

    opts = _options(section)
    model_path, out_dir = Path(model_path), Path(out_dir)
    if not model_path.is_file():
        raise FileNotFoundError(f"export: model {model_path} not found (run the train stage first)")
    torch.set_num_threads(int(opts["threads"]))
    model, features, vocab = load_model(model_path)
    if getattr(model, "transducer", False):  # RNN-T: three graphs with state (tasks/rnnt_export.py)
        from tasks.rnnt_export import run_transducer

        return run_transducer(model, features, vocab, opts, model_path, out_dir, _sha256)
    wave = _wave_variants(opts, features)
    with staged(out_dir) as tmp:
        files = _write_exports(model, features, tmp, opts, wave=bool(wave))
        parity = _check(model, features, vocab, tmp, opts, wave)
        passed = all(v["passed"] for v in parity.values())
        manifest = {"model": str(model_path), "model_sha256": _sha256(model_path), "opset": int(opts["opset"]),
                    "inputs": {"features": "float32 (batch, n_mels, time)" if hasattr(features.cfg, "n_mels")
                               else "float32 (batch, samples): the waveform (wav2vec 2.0)",
                               "feature_lens": "int64 (batch,)"},
                    "outputs": {"log_probs": "float32 (batch, time_out, vocab)", "log_prob_lens": "int64 (batch,)"},
                    "variants": {"onnxruntime_fp32": "model.onnx", "openvino_fp32": "openvino/model.xml (f32 hint)",
                                 "openvino_bf16": "openvino/model.xml (bf16 hint)",
                                 "openvino_fp16w": "openvino_fp16/model.xml (fp16 weights, f32 hint)"},
                    "files": files}
        if wave:
            manifest["waveform"] = {
                "inputs": {"audio": f"float32 (batch, samples) at {features.cfg.sample_rate} Hz, zero padded",
                           "audio_lens": "int64 (batch,)"},
                "outputs": manifest["outputs"], "features": features.cfg.to_dict(),
                "variants": {WAVE_FP32: "openvino_wave/model.xml (f32 hint)",
                             WAVE_BF16: "openvino_wave/model.xml (bf16 hint)",
                             "onnx": "model_wave.onnx"}}
        publish(tmp, out_dir, manifest, passed)
    return {"model": str(model_path), "passed": passed, "split": opts["split"],
            "utterances": next((v["utterances"] for v in parity.values() if "utterances" in v), 0),
            "wer_torch": next((v["wer_torch"] for v in parity.values() if "wer_torch" in v), None),
            "fp32_max_abs_diff_tolerance": float(opts["fp32_max_abs_diff"]),
            "wer_tolerance": float(opts["wer_tolerance"]), "backends": parity,
            "files": {k: v for k, v in files.items()}}


def main(argv: list[str] | None = None) -> dict:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model.pt written by the train stage")
    p.add_argument("--out", required=True, help="export folder (exports/<name>)")
    p.add_argument("--report", default="reports/export.json")
    args = p.parse_args(argv)
    section = load_params(args.params, "export")
    from tasks.tracking import stage_run

    out = Path(args.out)
    with stage_run("export", {"export": section}) as tr:
        report = run(section, args.model, out)
        write_report(args.report, report)
        keep = ("max_abs_diff", "wer", "wer_change", "transcripts_differ")
        tr.log_metrics({"export": {name: {**{k: v for k, v in r.items() if k in keep}, "passed": int(r["passed"])}
                                   for name, r in report["backends"].items()}})
        tr.log_artifact(args.report)
        if not report["passed"]:
            failed = [n for n, r in report["backends"].items() if not r["passed"]]
            raise ParityError(f"export: parity gate failed for {failed} (see {args.report}); nothing published")
        for rel in report["files"]:
            tr.log_artifact(out / rel, artifact_path=str(Path("exports") / Path(rel).parent))
        tr.log_artifact(out / "export.json", artifact_path="exports")
    return report


if __name__ == "__main__":
    main()
