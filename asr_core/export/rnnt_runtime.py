"""The transducer's exported graphs as a :class:`~asr_core.decoding.rnnt_stream.TransducerBackend`,
on onnxruntime or OpenVINO (CPU): the same greedy, beam and streaming decoders as PyTorch run on them.

    backend = load_backend("exports/rnnt_small", "onnxruntime", threads=2)
    st = StreamingTranscriber(backend, features, vocab)

The model's shapes (stack, time reduction, blank) are read from ``rnnt_export.json``, which the
export stage writes beside the graphs. OpenVINO runs with the f32 inference hint (its CPU
plugin would otherwise pick bf16 where the CPU has it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from asr_core.export.rnnt_int8 import FOLDER as INT8_FOLDER
from asr_core.export.rnnt_int8 import META as INT8_META
from asr_core.export.rnnt_onnx import GRAPHS, graph_io, predictor_kind
from asr_core.models.rnnt.frontend import stack_frames

META = "rnnt_export.json"


def _np(x, dtype) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=dtype)


class _GraphBackend:
    """Shared logic; subclasses set ``self._run[name](feeds) -> list of arrays``."""

    def __init__(self, export_dir: str | os.PathLike) -> None:
        self.dir = Path(export_dir)
        meta_path = self.dir / META
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path} not found: not a transducer export (run the export stage)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        self.streaming, self.blank = bool(meta.get("streaming", True)), meta["blank"]
        if self.streaming:
            self.stack, self.time_reduction = meta["stack"], meta["time_reduction"]
            self.enc_state_shape = (meta["enc_layers"], meta["enc_hidden"])
        self.predictor = meta.get("predictor", "lstm")
        if self.predictor == "stateless":
            self.context_size = meta["context_size"]
        else:
            self.pred_state_shape = (meta["pred_layers"], meta["pred_hidden"])
        self._run: dict = {}

    def encoder_state(self, batch: int) -> tuple:
        z = torch.zeros(self.enc_state_shape[0], batch, self.enc_state_shape[1])
        return z, z.clone()

    def encode_utterances(self, feats, feat_lens):
        """Whole utterances (B, N, F) -> (f (B, T', D), f_lens)."""
        if self.streaming:
            s, s_lens = stack_frames(feats, feat_lens, self.stack)
            return self.encode(s, s_lens, self.encoder_state(feats.size(0)))[:2]
        enc, lens = self._run["encoder"]({"feats": _np(feats, np.float32), "feat_lens": _np(feat_lens, np.int64)})
        return torch.from_numpy(enc), torch.from_numpy(lens.astype(np.int64))

    def predictor_state(self, batch: int) -> tuple:
        if self.predictor == "stateless":
            return (torch.full((1, batch, self.context_size - 1), self.blank, dtype=torch.long),)
        z = torch.zeros(self.pred_state_shape[0], batch, self.pred_state_shape[1])
        return z, z.clone()

    def encode(self, s, s_lens, state):
        enc, lens, h, c = self._run["encoder"](
            {
                "frames": _np(s, np.float32),
                "frame_lens": _np(s_lens, np.int64),
                "h_in": _np(state[0], np.float32),
                "c_in": _np(state[1], np.float32),
            }
        )
        return (
            torch.from_numpy(enc),
            torch.from_numpy(lens.astype(np.int64)),
            (torch.from_numpy(h), torch.from_numpy(c)),
        )

    def predict(self, y, state):
        if self.predictor == "stateless":
            g, ctx = self._run["predictor"]({"tokens": _np(y, np.int64), "ctx_in": _np(state[0], np.int64)})
            return torch.from_numpy(g), (torch.from_numpy(ctx.astype(np.int64)),)
        g, h, c = self._run["predictor"](
            {"tokens": _np(y, np.int64), "h_in": _np(state[0], np.float32), "c_in": _np(state[1], np.float32)}
        )
        return torch.from_numpy(g), (torch.from_numpy(h), torch.from_numpy(c))

    def joint(self, f, g):
        (logits,) = self._run["joint"]({"enc": _np(f, np.float32), "g": _np(g, np.float32)})
        return torch.from_numpy(logits)


class OnnxRuntimeBackend(_GraphBackend):
    name = "onnxruntime"

    def __init__(self, export_dir: str | os.PathLike, threads: int | None = None) -> None:
        import onnxruntime as ort

        super().__init__(export_dir)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads, opts.inter_op_num_threads = int(threads), 1
        opts.log_severity_level = 3
        for name in GRAPHS:
            path = self.dir / f"{name}.onnx"
            if not path.is_file():
                raise FileNotFoundError(f"ONNX graph not found: {path} (run the export stage)")
            sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
            self._run[name] = lambda feeds, sess=sess: sess.run(None, feeds)


class OpenVINOBackend(_GraphBackend):
    name = "openvino"

    def __init__(
        self,
        export_dir: str | os.PathLike,
        threads: int | None = None,
        precision: str = "f32",
        folder: str = "openvino",
    ) -> None:
        import openvino as ov

        super().__init__(export_dir)
        core = ov.Core()
        if precision == "bf16":
            if "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
                raise RuntimeError("openvino_bf16: this CPU has no bf16 support")
            self.name = "openvino_bf16"
        # f32 explicitly: the CPU plugin would otherwise pick bf16 on CPUs that have it
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        for name in GRAPHS:
            path = self.dir / folder / name / "model.xml"
            if not path.is_file():
                raise FileNotFoundError(f"OpenVINO IR not found: {path} (run the export stage)")
            compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
            request = compiled.create_infer_request()
            outs = [compiled.output(o) for o in graph_io(name, self.streaming, self.predictor)[1]]

            def run(feeds, request=request, outs=outs):
                res = request.infer(feeds)
                return [np.array(res[o], copy=True) for o in outs]

            self._run[name] = run


class OpenVINOInt8Backend(OpenVINOBackend):
    """The int8-weight graphs of :mod:`asr_core.export.rnnt_int8`: the encoder takes chunks of a fixed
    length (``chunk_frames`` in ``openvino_int8/int8.json``), so longer inputs go through in pieces of
    that length, state carried, and a shorter piece is padded (its ``frame_lens`` mask the padding)."""

    name = "openvino_int8"

    def __init__(self, export_dir: str | os.PathLike, threads: int | None = None) -> None:
        meta_path = Path(export_dir) / INT8_FOLDER / INT8_META
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"{meta_path} not found: no int8 graphs in this export (export.reduced_precision: openvino_int8)"
            )
        self.chunk = int(json.loads(meta_path.read_text(encoding="utf-8"))["chunk_frames"])
        super().__init__(export_dir, threads, precision="f32", folder=INT8_FOLDER)

    def encode(self, s, s_lens, state):
        n, k = s.size(1), self.chunk
        outs, out_lens = [], torch.zeros_like(s_lens)
        for start in range(0, max(n, 1), k):
            piece = s[:, start : start + k]
            lens = (s_lens - start).clamp(0, piece.size(1))
            if piece.size(1) < k:
                piece = torch.nn.functional.pad(piece, (0, 0, 0, k - piece.size(1)))
            enc, enc_lens, state = super().encode(piece, lens, state)
            outs.append(enc)
            out_lens += enc_lens
        enc = torch.cat(outs, dim=1)[:, : int(out_lens.max())]
        return enc, out_lens, state


BACKENDS = ("onnxruntime", "openvino", "openvino_bf16", "openvino_int8")


def load_backend(export_dir: str | os.PathLike, backend: str, threads: int | None = None):
    """``backend``: onnxruntime | openvino | openvino_bf16 (bf16 inference hint: reduced precision) |
    openvino_int8 (int8 weights, :mod:`asr_core.export.rnnt_int8`)."""
    if backend == "onnxruntime":
        return OnnxRuntimeBackend(export_dir, threads)
    if backend in ("openvino", "openvino_bf16"):
        return OpenVINOBackend(export_dir, threads, precision="bf16" if backend == "openvino_bf16" else "f32")
    if backend == "openvino_int8":
        return OpenVINOInt8Backend(export_dir, threads)
    raise ValueError(f"transducer backend must be one of {', '.join(BACKENDS)}, got {backend!r}")


def write_meta(model, out_dir: str | os.PathLike) -> Path:
    """``rnnt_export.json``: what a backend needs to know about the graphs."""
    from asr_core.io.atomic import atomic_write_json

    enc, pred, kind = model.encoder, model.predictor.cfg, predictor_kind(model)
    streaming = bool(enc.streaming)
    meta = {
        "streaming": streaming,
        "blank": model.blank,
        "predictor": kind,
        "vocab_size": model.num_outputs,
        "graphs": {n: dict(zip(("inputs", "outputs"), map(list, graph_io(n, streaming, kind)))) for n in GRAPHS},
    }
    if kind == "stateless":
        meta["context_size"] = pred.context_size
    else:
        meta.update(pred_layers=pred.pred_layers, pred_hidden=pred.pred_hidden)
    if streaming:
        cfg = enc.cfg
        meta.update(
            stack=cfg.stack,
            time_reduction=cfg.time_reduction if cfg.time_reduction_layer >= 0 else 1,
            enc_layers=cfg.enc_layers,
            enc_hidden=cfg.enc_hidden,
        )
    path = Path(out_dir) / META
    atomic_write_json(path, meta)
    return path
