"""The CTC benchmark: inference latency/throughput grid per backend, WER per backend, training throughput.

Per device and runner (``benchmark.cpu_runners`` / ``cuda_runners``: torch eager in each precision,
CUDA graphs, onnxruntime, OpenVINO, the waveform-input graph), every (batch, clip length) cell of
the grid is timed end to end (:mod:`asr_core.bench.grid`), and the runner's WER is measured on the
``benchmark.wer`` split. Runners that cannot run here (CUDA ones without a GPU) are listed under
``skipped`` with the reason. ``preset`` (``family:preset``) times random weights, without WER.
Writes ``cells.csv``, ``latency.png``, ``rtfx.png``, ``report.md`` and ``machine.json`` into ``out_dir``.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import tempfile
from pathlib import Path

KNOWN = {
    "devices",
    "threads",
    "feature_threads",
    "cpu_runners",
    "cuda_runners",
    "grid",
    "audio_manifest",
    "wer",
    "train_throughput",
    "regression",
    "openvino_static_shapes",
    "transducer",
}
WER_DEFAULTS = {
    "manifest_dir": "data/prepared",
    "split": "test",
    "max_utterances": None,
    "batch_seconds": 120.0,
    "num_workers": 1,
}
TT_DEFAULTS = {"enabled": False, "precisions": ["fp32"], "batch_size": 4, "clip_seconds": 7.0, "warmup": 1, "steps": 2}


def _mapping(section: dict, name: str) -> dict:
    value = section.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"benchmark.{name} must be a mapping, got {type(value).__name__}")
    return value


def _options(section: dict) -> dict:
    unknown = sorted(set(section) - KNOWN)
    if unknown:
        raise ValueError(f"benchmark: unknown key(s) {unknown}; known: {sorted(KNOWN)}")
    devices = section.get("devices", ["cpu"])
    if not devices or set(devices) - {"cpu", "cuda"}:
        raise ValueError(f"benchmark.devices: a list of cpu and/or cuda, got {devices!r}")
    feature_threads = section.get("feature_threads", 1)
    if feature_threads is not None and int(feature_threads) < 1:
        raise ValueError(f"benchmark.feature_threads: a positive thread count or null, got {feature_threads!r}")
    return {
        "devices": list(devices),
        "threads": int(section.get("threads", 2)),
        "feature_threads": None if feature_threads is None else int(feature_threads),
        "static_shapes": bool(section.get("openvino_static_shapes", True)),
        "runners": {"cpu": list(section.get("cpu_runners") or []), "cuda": list(section.get("cuda_runners") or [])},
        "grid": _mapping(section, "grid"),
        "audio_manifest": section.get("audio_manifest"),
        "wer": {**WER_DEFAULTS, **_mapping(section, "wer")},
        "train_throughput": {**TT_DEFAULTS, **_mapping(section, "train_throughput")},
    }


def _load(model_path: str | None, preset: str | None, exports: str | None, tmp: Path, wave: bool = False):
    """(model, features, vocab or None, export folder, description).

    ``wave``: a preset also gets the waveform-input graph (``openvino_wave/``) for a filterbank model.
    """
    from asr_core.features import FilterbankConfig, FilterbankFeatures
    from asr_core.models.artifact import load_model

    if preset:
        from asr_core.export import export_onnx, export_openvino
        from asr_core.models import build_model

        family, _, name = preset.partition(":")
        model = build_model(family, name, 29).eval()  # random weights: speed only
        wave_model = family == "wav2vec2"  # raw waveform in: (B, S) samples
        export_onnx(model, tmp / "model.onnx", in_features=None if wave_model else 64)
        export_openvino(tmp / "model.onnx", tmp / "openvino")
        if wave_model:
            from asr_core.models.wav2vec2 import WaveformConfig

            features = WaveformConfig().module().eval()
        else:
            features = FilterbankFeatures(FilterbankConfig()).eval()
            if wave:
                from asr_core.export import export_waveform_onnx

                export_waveform_onnx(model, features, tmp / "model_wave.onnx")
                export_openvino(tmp / "model_wave.onnx", tmp / "openvino_wave")
        return model, features, None, tmp, f"{family} {name} (random weights)"
    if not model_path or not Path(model_path).is_file():
        raise FileNotFoundError(f"benchmark: model {model_path} not found (run the train stage, or pass --preset)")
    model, features, vocab = load_model(model_path)
    if exports is None or not Path(exports).is_dir():
        raise FileNotFoundError(f"benchmark: export folder {exports} not found (run the export stage)")
    return model, features, vocab, Path(exports), str(model_path)


def _clip_sources(manifest: str | None, limit: int = 64):
    if not manifest or not Path(manifest).is_file():
        return None
    from asr_core.data.audio import load_audio, resample, to_mono
    from asr_core.io import read_jsonl

    out = []
    for row in read_jsonl(manifest):
        path = Path(row["audio_filepath"])
        x, sr = load_audio(path if path.is_absolute() else Path(manifest).parent / path)
        x = to_mono(x)
        out.append(x if sr == 16000 else resample(x, sr, 16000))
        if len(out) >= limit:
            break
    return out or None


def _wer(runner, batches, vocab):
    from asr_core.decoding import corpus_errors
    from asr_core.export.parity import decode_batches, references

    hyps = decode_batches(runner, batches, vocab).hyps
    return round(corpus_errors(zip(references(batches), hyps))["wer"], 6)


def benchmark(
    section: dict,
    *,
    model_path: str | None,
    exports: str | None,
    out_dir: str | Path,
    preset: str | None = None,
    log=print,
) -> dict:
    import torch

    from asr_core.bench.grid import ClipLoader, GridConfig, make_clips, run_grid
    from asr_core.bench.measure import machine_facts
    from asr_core.bench.report import write_outputs
    from asr_core.bench.train_throughput import train_throughput
    from asr_core.export import BackendUnavailable, RunnerSpec, make_runner

    opts = _options(section)
    g = opts["grid"]
    grid = GridConfig(
        **{
            **g,
            "batch_sizes": tuple(g.get("batch_sizes", (1, 2, 4, 8, 16))),
            "clip_seconds": tuple(float(c) for c in g.get("clip_seconds", (2.0, 7.0, 16.7))),
        }
    )
    torch.set_num_threads(opts["threads"])
    specs = {d: [RunnerSpec.parse(n) for n in opts["runners"][d]] for d in opts["devices"]}
    any_wave = any(s.wave for d in specs for s in specs[d])  # waveform-input runners: openvino_wave_*
    tmp = Path(tempfile.mkdtemp(prefix="asr-bench-"))
    try:
        model, features, vocab, export_dir, what = _load(model_path, preset, exports, tmp, wave=any_wave)
        filterbank = features.feature_dim is not None
        sources = _clip_sources(opts["audio_manifest"])
        clips = {c: make_clips(tmp / "clips", c, max(grid.batch_sizes), sources=sources) for c in grid.clip_seconds}
        batches = None
        if vocab is not None:
            from asr_core.export.parity import manifest_batches

            w = opts["wer"]
            manifest = Path(w["manifest_dir"]) / f"{w['split']}.jsonl"
            if not manifest.is_file():
                raise FileNotFoundError(f"benchmark.wer: no manifest for split {w['split']!r} at {manifest}")
            batches = manifest_batches(
                manifest,
                features,
                vocab,
                batch_seconds=float(w["batch_seconds"]),
                max_utterances=w["max_utterances"],
                num_workers=int(w["num_workers"]),
                keep_waves=any_wave and filterbank,
            )
        cells, wer, skipped = {}, {}, {}
        for device in opts["devices"]:
            for spec in specs[device]:
                key = f"{device}/{spec.name}"
                try:
                    if device == "cuda" and not torch.cuda.is_available():
                        raise BackendUnavailable("skipped: no CUDA")
                    if spec.wave and not filterbank:
                        raise BackendUnavailable(
                            "skipped: the model takes the waveform already (no filterbank "
                            "to put in the graph): see openvino_fp32 / openvino_bf16"
                        )
                    runner = make_runner(
                        spec,
                        model=copy.deepcopy(model),
                        export_dir=export_dir,
                        device=device,
                        threads=opts["threads"],
                        static_shapes=opts["static_shapes"],
                    )
                except BackendUnavailable as e:
                    skipped[key] = str(e)
                    log(f"benchmark: {key}: {e}")
                    continue
                if batches is not None:
                    # WER with dynamic shapes and no CUDA graphs: the same kernels and numerics, without
                    # compiling or capturing once per batch shape
                    plain = make_runner(
                        dataclasses.replace(spec, cuda_graphs=False),
                        model=copy.deepcopy(model),
                        export_dir=export_dir,
                        device=device,
                        threads=opts["threads"],
                    )
                    wer[key] = _wer(plain, batches, vocab)
                    del plain
                    log(f"benchmark: {key}: WER {100 * wer[key]:.2f}% on {opts['wer']['split']}")
                # a waveform-input runner computes the filterbank itself: its timed data is read + pad
                feats = None if runner.takes_waveform else features
                loaders = {
                    c: ClipLoader(clips[c], copy.deepcopy(feats), device, threads=opts["feature_threads"])
                    for c in grid.clip_seconds
                }
                cells.update(run_grid(runner, loaders, grid, device, log=log))
                del runner
        tt = {}
        t = opts["train_throughput"]
        if t["enabled"]:
            for device in opts["devices"]:
                for precision in t["precisions"]:
                    k = f"{device}/{precision}"
                    if device == "cuda" and not torch.cuda.is_available():
                        skipped[f"train/{k}"] = "skipped: no CUDA"
                        continue
                    if device == "cpu" and precision in ("fp16", "tf32"):
                        continue
                    tt[k] = train_throughput(
                        copy.deepcopy(model),
                        batch_size=int(t["batch_size"]),
                        clip_seconds=float(t["clip_seconds"]),
                        precision=precision,
                        warmup=int(t["warmup"]),
                        steps=int(t["steps"]),
                        device=device,
                        in_features=features.feature_dim,
                    )
                    log(
                        f"benchmark: training {k}: {tt[k]['sequences_per_s']:.2f} sequences/s, "
                        f"{tt[k]['audio_s_per_s']:.1f} audio s/s"
                    )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report = {
        "model": what,
        "preset": preset,
        "machine": machine_facts(),
        "grid": {
            "batch_sizes": list(grid.batch_sizes),
            "clip_seconds": list(grid.clip_seconds),
            "warmup": grid.warmup,
            "iterations": grid.iterations,
            "min_iterations": grid.min_iterations,
            "max_cell_seconds": grid.max_cell_seconds,
            "openvino_static_shapes": opts["static_shapes"],
        },
        "cells": cells,
        "wer": wer,
        "skipped": skipped,
        "train_throughput": tt,
    }
    write_outputs({**report, "train_throughput": list(tt.values())}, out_dir)
    return report
