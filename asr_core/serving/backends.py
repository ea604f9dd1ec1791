"""Which model and backend a server runs: a ``model.pt`` on PyTorch, or an export folder on the fastest
backend that passed the export's parity gate.

An export folder (``exports/<name>/``, written by ``python -m tasks.export``) holds the graphs and
``export.json``, which names the ``model.pt`` they came from (its features and vocabulary are read from
there, and its sha256 must still match) and each backend's parity result (``parity``). With no backend
named, every backend whose gate passed (not skipped) is loaded and timed on a short probe stream, and the
fastest serves; PyTorch on the model file is the reference the gates compare with, not a candidate.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asr_core.io import file_sha256

SERVE_BACKENDS = ("torch", "onnxruntime", "openvino", "openvino-bf16", "openvino-int8")
PARITY_NAME = {
    "onnxruntime": "onnxruntime_fp32",
    "openvino": "openvino_fp32",
    "openvino-bf16": "openvino_bf16",
    "openvino-int8": "openvino_int8",  # transducers: int8 weights, gated on WER
}
# gated on WER, not on parity: its transcripts may differ from PyTorch's, so it is never picked unasked
NAMED_ONLY = {"openvino-int8": "int8 weights, gated on WER"}
PROBE_SECONDS = 2.0


@dataclass(frozen=True)
class ModelSource:
    model_path: Path
    export_dir: Path | None = None
    parity: dict = field(default_factory=dict)  # the export's gate results by runner name

    def gated(self) -> dict[str, str]:
        """Serving backend -> why it may not serve ("" when its gate passed and it ran)."""
        out = {}
        for backend, name in PARITY_NAME.items():
            entry = self.parity.get(name)
            if entry is None:
                out[backend] = f"{name} has no parity result in {self.export_dir}/export.json"
            elif entry.get("skipped"):
                out[backend] = f"{name} was not gated: {entry['skipped']}"
            elif not entry.get("passed"):
                out[backend] = f"{name} failed the export's parity gate"
            else:
                out[backend] = ""
        return out


def resolve_source(path: str | os.PathLike) -> ModelSource:
    """``model.pt`` or an export folder -> :class:`ModelSource` (raises ValueError / FileNotFoundError)."""
    path = Path(path)
    if path.is_file():
        return ModelSource(path)
    if not path.is_dir():
        raise FileNotFoundError(f"--model {path}: neither a model.pt nor an export folder")
    meta_path = path / "export.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"--model {path}: a folder without export.json (run the export stage)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    model_path = Path(meta.get("model", ""))
    if not model_path.is_file() and model_path.name and (path / model_path.name).is_file():
        model_path = path / model_path.name  # the copy a registered version carries beside its graphs
    if not model_path.is_file():
        raise FileNotFoundError(
            f"{meta_path}: names the model file {str(model_path)!r} (its features and vocabulary), not found "
            f"from {Path.cwd()} nor in {path}"
        )
    if meta.get("model_sha256") and file_sha256(model_path) != meta["model_sha256"]:
        raise ValueError(f"{model_path} changed since {path} was exported from it: export it again")
    return ModelSource(model_path, path, dict(meta.get("parity") or {}))


class PerThread:
    """An object built once per thread that calls it: an OpenVINO infer request must not be used by two
    threads at once, and one per worker thread lets streams decode in parallel. Attributes that are not
    methods are read from the first instance."""

    def __init__(self, make) -> None:
        self._make, self._local = make, threading.local()
        self._local.obj = self._first = make()

    def _obj(self):
        obj = getattr(self._local, "obj", None)
        if obj is None:
            obj = self._local.obj = self._make()
        return obj

    def __getattr__(self, name: str):
        if not callable(getattr(self._first, name)):
            return getattr(self._first, name)
        return lambda *args, **kwargs: getattr(self._obj(), name)(*args, **kwargs)

    def __call__(self, *args, **kwargs):
        return self._obj()(*args, **kwargs)


def load(source: ModelSource, backend: str, threads: int = 1, **transducer):
    """The :class:`~asr_core.serving.engine.ServingModel` of ``source`` on ``backend``."""
    from asr_core.models.artifact import load_model
    from asr_core.serving.engine import CtcServingModel, TransducerServingModel

    if backend not in SERVE_BACKENDS:
        raise ValueError(f"--backend must be one of {list(SERVE_BACKENDS)}, got {backend!r}")
    if backend != "torch":
        if source.export_dir is None:
            raise ValueError(f"--backend {backend} runs exported graphs: give the export folder as --model")
        why = source.gated()[backend]
        if why:
            raise ValueError(f"--backend {backend}: {why}")
    model, features, vocab = load_model(source.model_path)
    if model.kind == "transducer":
        if backend == "torch":
            from asr_core.decoding.rnnt_stream import TorchBackend

            graphs = TorchBackend(model)
        else:
            from asr_core.export.rnnt_runtime import load_backend

            name = backend.replace("-", "_")
            make = lambda: load_backend(source.export_dir, name, threads=threads)
            graphs = PerThread(make) if backend.startswith("openvino") else make()
        return TransducerServingModel(backend, graphs, model, features, vocab, **transducer)
    runner = model
    if backend != "torch":
        from asr_core.export import make_runner

        make = lambda: make_runner(PARITY_NAME[backend], export_dir=source.export_dir, threads=threads)
        runner = PerThread(make) if backend.startswith("openvino") else make()
    return CtcServingModel(backend, runner, model, features, vocab)


def probe_seconds(serving, seconds: float = PROBE_SECONDS, repeats: int = 2) -> float:
    """Best wall time of streaming ``seconds`` of a test tone in 100 ms pieces and finishing the stream."""
    n = int(seconds * serving.sample_rate)
    t = np.arange(n, dtype=np.float32) / serving.sample_rate
    wave = (0.1 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)
    piece = serving.sample_rate // 10
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        stream = serving.stream(partial_every=0.0)  # a whole-utterance stream decodes once, at its end
        for i in range(0, n, piece):
            stream.accept(wave[i : i + piece])
        stream.finish()
        best = min(best, time.perf_counter() - t0)
    return best


def choose(source: ModelSource, threads: int = 1, log=print, **transducer):
    """``(serving model, {backend: probe seconds or why not})``: the fastest gated backend of an export
    folder, or PyTorch for a model file."""
    if source.export_dir is None:
        return load(source, "torch", threads, **transducer), {"torch": "a model file runs on PyTorch"}
    report: dict[str, float | str] = {}
    best, best_seconds = None, float("inf")
    for backend, why in source.gated().items():
        if not why and backend in NAMED_ONLY:
            why = f"{NAMED_ONLY[backend]}: served only when named (--backend {backend})"
        if why:
            report[backend] = why
            continue
        try:
            serving = load(source, backend, threads, **transducer)
        except (RuntimeError, ValueError, FileNotFoundError, ImportError) as e:
            report[backend] = f"did not load: {e}"
            continue
        seconds = probe_seconds(serving)
        report[backend] = round(seconds, 4)
        log(f"serve: {backend}: {seconds:.4f} s to stream a {PROBE_SECONDS:.0f} s probe")
        if seconds < best_seconds:
            best, best_seconds = serving, seconds
    if best is None:
        raise ValueError(f"{source.export_dir}: no backend passed the export's parity gate and loaded: {report}")
    return best, report
