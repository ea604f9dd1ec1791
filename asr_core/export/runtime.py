"""Backend runners: one call signature for PyTorch, onnxruntime and OpenVINO.

A runner maps ``(features (B, F, T), feature_lens (B,))`` torch tensors to
``(log_probs (B, T', V) float32, log_prob_lens (B,) int64)`` torch tensors, like the
PyTorch module it stands for, and has ``eval()``; so it can be passed wherever
:mod:`asr_core.decoding.infer` takes a model. Runners are named ``<backend>_<precision>``:

    torch_fp32  torch_bf16                  eager PyTorch; bf16 is autocast (CPU or CUDA)
    torch_tf32  torch_fp16                  CUDA only (TF32 matmuls / fp16 autocast)
    torch_<p>_graphs                        CUDA only: one CUDA graph captured per input shape
    onnxruntime_fp32                        ``model.onnx`` (CPU, or CUDA when onnxruntime has it)
    openvino_fp32  openvino_bf16            ``openvino/model.xml`` with inference precision f32 / bf16
    openvino_fp16w                          ``openvino_fp16/model.xml`` (fp16 weights), f32 inference
    openvino_wave_fp32  openvino_wave_bf16  ``openvino_wave/model.xml``: filterbank + network, so the
                                            runner takes ``(audio (B, S), audio_lens (B,))`` instead
                                            (``runner.takes_waveform``; :mod:`asr_core.export.waveform`)

OpenVINO's CPU plugin *defaults* to bf16 on CPUs that have it (avx512_bf16, AMX): the fp32
runner sets the f32 hint explicitly, or "fp32" would silently be bf16.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from asr_core.export.waveform import WAVE_INPUT_NAMES, WAVE_OPENVINO_DIR

BACKENDS = ("torch", "onnxruntime", "openvino")
PRECISIONS = {
    "torch": ("fp32", "tf32", "bf16", "fp16"),
    "onnxruntime": ("fp32",),
    "openvino": ("fp32", "bf16", "fp16w"),
}
CUDA_ONLY = {"tf32", "fp16"}
WAVE_PRECISIONS = {"openvino": ("fp32", "bf16")}  # waveform-input graphs (``<backend>_wave_<precision>``)


class BackendUnavailable(RuntimeError):
    """A runner that cannot run here (no CUDA, no bf16 in the CPU, ...): skipped, not failed."""


@dataclass(frozen=True)
class RunnerSpec:
    backend: str
    precision: str
    cuda_graphs: bool = False
    wave: bool = False  # the waveform-input graph (filterbank inside)

    @property
    def name(self) -> str:
        middle = "_wave" if self.wave else ""
        return f"{self.backend}{middle}_{self.precision}" + ("_graphs" if self.cuda_graphs else "")

    @classmethod
    def parse(cls, name: str) -> RunnerSpec:
        parts = name.split("_")
        graphs = parts[-1] == "graphs"
        if graphs:
            parts = parts[:-1]
        wave = len(parts) == 3 and parts[1] == "wave"
        if wave:
            parts = [parts[0], parts[2]]
        allowed = WAVE_PRECISIONS if wave else PRECISIONS
        if len(parts) != 2 or parts[0] not in allowed or parts[1] not in allowed[parts[0]]:
            known = [f"{b}_{p}" for b in BACKENDS for p in PRECISIONS[b]]
            known += [f"{b}_wave_{p}" for b in WAVE_PRECISIONS for p in WAVE_PRECISIONS[b]]
            raise ValueError(f"unknown runner {name!r}; known: {known} (torch_<precision>_graphs on CUDA)")
        if graphs and parts[0] != "torch":
            raise ValueError(f"{name!r}: CUDA graphs are a torch option")
        return cls(parts[0], parts[1], graphs, wave)


class Runner:
    """Base: ``runner(feats, lens) -> (log_probs, out_lens)``; subclasses implement ``_run``.

    ``takes_waveform``: the runner's inputs are ``(audio (B, S), audio_lens)``, not features.
    """

    spec: RunnerSpec
    device: torch.device = torch.device("cpu")
    takes_waveform: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    def eval(self) -> Runner:
        return self

    def __call__(self, feats: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._run(feats, lens)

    def _run(self, feats, lens):  # pragma: no cover - abstract
        raise NotImplementedError


class TorchRunner(Runner):
    def __init__(self, model: nn.Module, spec: RunnerSpec, device: str | torch.device = "cpu") -> None:
        self.spec, self.device = spec, torch.device(device)
        cuda = self.device.type == "cuda"
        if cuda and not torch.cuda.is_available():
            raise BackendUnavailable("skipped: no CUDA")
        if not cuda and (spec.precision in CUDA_ONLY or spec.cuda_graphs):
            raise BackendUnavailable(f"skipped: {spec.name} needs CUDA")
        self.model = model.to(self.device).eval()
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(spec.precision)
        self._graphs: dict[tuple, tuple] = {}

    def _autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        # cache_enabled=False: required inside CUDA graph capture, harmless elsewhere
        return torch.autocast(self.device.type, dtype=self.dtype, cache_enabled=False)

    def _forward(self, x, x_lens):
        with self._autocast():
            return self.model(x, x_lens)

    @torch.inference_mode()
    def _run(self, feats, lens):
        if self.device.type == "cuda":
            tf32 = self.spec.precision == "tf32"
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
        x, x_lens = feats.to(self.device, non_blocking=True), lens.to(self.device, non_blocking=True)
        if self.spec.cuda_graphs:
            return self._replay(x, x_lens)
        return self._forward(x, x_lens)

    def _replay(self, x, x_lens):
        """One CUDA graph per (B, F, T): the first call of a shape warms up and captures."""
        key = tuple(x.shape)
        if key not in self._graphs:
            sx, sl = x.clone(), x_lens.clone()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    self._forward(sx, sl)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = self._forward(sx, sl)
            self._graphs[key] = (graph, sx, sl, out)
        graph, sx, sl, out = self._graphs[key]
        sx.copy_(x)
        sl.copy_(x_lens)
        graph.replay()
        return out[0].clone(), out[1].clone()


class OnnxRuntimeRunner(Runner):
    def __init__(
        self, onnx_path: str | os.PathLike, spec: RunnerSpec, device: str = "cpu", threads: int | None = None
    ) -> None:
        import onnxruntime as ort

        self.spec, self.device = spec, torch.device("cpu")
        path = Path(onnx_path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path} (run the export stage)")
        providers = ["CPUExecutionProvider"]
        if torch.device(device).type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendUnavailable("skipped: this onnxruntime build has no CUDA provider")
            providers.insert(0, "CUDAExecutionProvider")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)

    def _run(self, feats, lens):
        lp, ll = self.session.run(None, {"features": _np(feats, np.float32), "feature_lens": _np(lens, np.int64)})
        return torch.from_numpy(lp), torch.from_numpy(ll)


class OpenVINORunner(Runner):
    """OpenVINO IR on its CPU (or GPU) plugin.

    ``static_shapes``: compile one model per input shape (reshaped to it) instead of one model
    with dynamic batch and time; the benchmark grid, whose cells have fixed shapes, uses it (the
    first call of a shape compiles, in the warm-up). The last ``max_shapes`` compiled models are kept.
    A batch without padding (every length equal to the time axis: any single utterance, or the
    grid's equal-length clips) gets a model whose ``feature_lens`` input is bound to that constant:
    OpenVINO then folds away the length masks in front of every convolution (they are identities
    there), which is exact and ~15% faster for QuartzNet 15x5 (README, "Export"). Before that, the
    time axis is cut to the longest length: the frames past it are padding that no valid output
    reads (the features' ``pad_to``: a 7 s clip is 700 frames in a 704-frame tensor), so equal-length
    clips padded that way also get the bound model, and the outputs' padded tail is shorter.
    ``input_names``: the graph's (data, lengths) inputs.
    """

    input_names: tuple[str, str] = ("features", "feature_lens")

    def __init__(
        self,
        xml_path: str | os.PathLike,
        spec: RunnerSpec,
        device: str = "cpu",
        threads: int | None = None,
        static_shapes: bool = False,
        max_shapes: int = 8,
    ) -> None:
        import openvino as ov

        self.spec, self.device = spec, torch.device("cpu")
        path = Path(xml_path)
        if not path.is_file():
            raise FileNotFoundError(f"OpenVINO IR not found: {path} (run the export stage)")
        core = ov.Core()
        ov_device = "GPU" if torch.device(device).type == "cuda" else "CPU"
        if ov_device not in core.available_devices:
            raise BackendUnavailable(f"skipped: OpenVINO has no {ov_device} device here")
        hint = "bf16" if spec.precision == "bf16" else "f32"
        if (
            hint == "bf16"
            and ov_device == "CPU"
            and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        ):
            raise BackendUnavailable("skipped: this CPU has no bf16 support")
        config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
        if threads and ov_device == "CPU":
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self._core, self._path, self._device, self._config = core, path, ov_device, config
        self.static_shapes, self.max_shapes = static_shapes, max_shapes
        self._by_shape: dict[tuple, tuple] = {}
        self.compiled = core.compile_model(core.read_model(str(path)), ov_device, config)
        self.request = self.compiled.create_infer_request()

    def _for_shape(self, shape: tuple, unpadded: bool) -> tuple:
        key = (shape, unpadded)
        if key not in self._by_shape:
            if len(self._by_shape) >= self.max_shapes:
                self._by_shape.pop(next(iter(self._by_shape)))
            model = self._core.read_model(str(self._path))
            data, lengths = self.input_names
            model.reshape({data: list(shape), lengths: [shape[0]]})
            if unpadded:
                bind_lengths(model, lengths, np.full(shape[0], shape[-1], dtype=np.int64))
            compiled = self._core.compile_model(model, self._device, self._config)
            self._by_shape[key] = (compiled, compiled.create_infer_request())
        return self._by_shape[key]

    def _run(self, feats, lens):
        if self.static_shapes and lens.numel() and 0 < int(lens.max()) < feats.shape[-1]:
            feats = feats[..., : int(lens.max())]  # padding no valid output reads (class docstring)
        unpadded = self.static_shapes and bool((lens == feats.shape[-1]).all())
        compiled, request = (
            self._for_shape(tuple(feats.shape), unpadded) if self.static_shapes else (self.compiled, self.request)
        )
        data, lengths = self.input_names
        inputs = {data: _np(feats, np.float32)}
        if not unpadded:
            inputs[lengths] = _np(lens, np.int64)
        res = request.infer(inputs)
        lp, ll = res[compiled.output(0)], res[compiled.output(1)]
        return torch.from_numpy(np.array(lp, copy=True)), torch.from_numpy(np.array(ll, dtype=np.int64, copy=True))


class OpenVINOWaveRunner(OpenVINORunner):
    """The waveform-input IR (``openvino_wave/model.xml``): ``runner(audio (B, S), audio_lens)``, the
    filterbank computed inside OpenVINO. Static shapes per (B, S); an unpadded batch binds ``audio_lens``."""

    input_names = WAVE_INPUT_NAMES
    takes_waveform = True


def bind_lengths(model, name: str, lengths: np.ndarray) -> None:
    """Replace the OpenVINO model's input ``name`` by the constant ``lengths`` (in place)."""
    from openvino import opset13

    param = next((p for p in model.get_parameters() if p.get_friendly_name() == name), None)
    if param is None:
        raise ValueError(f"OpenVINO model has no input {name!r}")
    param.output(0).replace(opset13.constant(lengths).output(0))
    model.remove_parameter(param)
    model.validate_nodes_and_infer_types()


def _np(t: torch.Tensor, dtype) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=dtype)


def export_file(export_dir: str | os.PathLike, spec: RunnerSpec) -> Path:
    """Where the export stage writes the file ``spec`` runs (see tasks/export.py)."""
    d = Path(export_dir)
    if spec.wave:  # openvino only (RunnerSpec.parse); its ONNX source is ``model_wave.onnx``
        return d / WAVE_OPENVINO_DIR / "model.xml"
    if spec.backend == "onnxruntime":
        return d / "model.onnx"
    if spec.backend == "openvino":
        return d / ("openvino_fp16" if spec.precision == "fp16w" else "openvino") / "model.xml"
    raise ValueError(f"{spec.name} runs the PyTorch model, not an exported file")


def make_runner(
    name: str | RunnerSpec,
    *,
    model: nn.Module | None = None,
    export_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    threads: int | None = None,
    static_shapes: bool = False,
) -> Runner:
    """Build a runner by name; raises :class:`BackendUnavailable` when it cannot run on this machine.

    ``static_shapes``: OpenVINO compiles per input shape (see :class:`OpenVINORunner`); ignored elsewhere.
    """
    spec = name if isinstance(name, RunnerSpec) else RunnerSpec.parse(name)
    if spec.backend == "torch":
        if model is None:
            raise ValueError(f"{spec.name} needs the PyTorch model")
        return TorchRunner(model, spec, device)
    if export_dir is None:
        raise ValueError(f"{spec.name} needs the export folder (exports/<name>)")
    if spec.backend == "onnxruntime":
        return OnnxRuntimeRunner(export_file(export_dir, spec), spec, device=device, threads=threads)
    cls = OpenVINOWaveRunner if spec.wave else OpenVINORunner
    return cls(export_file(export_dir, spec), spec, device=device, threads=threads, static_shapes=static_shapes)
