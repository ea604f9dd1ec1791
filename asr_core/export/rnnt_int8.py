"""The streaming transducer with int8 weights: OpenVINO IR whose weights NNCF compresses to int8.

Why the LSTMs are rewritten: at batch 1 an LSTM reads every weight once per frame, so streaming is
bound by weight traffic (the E6D2 stack reads ~190 MB of fp32 per 300 ms chunk), and NNCF's weight
compression covers MatMul, Gather and convolution weights but not an LSTM op's. So the graphs
here compute the same LSTMs with MatMuls: per layer, the input product of the whole chunk in one
MatMul, then the recurrent product frame by frame, the chunk's length fixed (``chunk_frames``) and
the loop unrolled. A shorter chunk (the end of a stream) is padded and its ``frame_lens`` mask
the state updates, so it gives the state an unpadded chunk would. The weights are then stored
as int8 with a scale per output channel (``nncf.compress_weights``, INT8_ASYM); activations stay
fp32, and OpenVINO's CPU plugin multiplies with the compressed weights directly.

    openvino_int8/encoder/model.xml    frames (B, chunk_frames, N*k), frame_lens, h_in, c_in -> as encoder.onnx
    openvino_int8/predictor/model.xml  as predictor.onnx
    openvino_int8/joint/model.xml      as joint.onnx
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from asr_core.export.rnnt_onnx import (
    DYNAMIC,
    GRAPHS,
    STATELESS_PREDICTOR_DYNAMIC,
    graph_io,
    graph_modules,
    predictor_kind,
    trace_graph,
)
from asr_core.export.rnnt_onnx import examples as trace_examples
from asr_core.export.to_openvino import export_openvino
from asr_core.io.atomic import atomic_write_json
from asr_core.models.rnnt.encoder import time_reduce

FOLDER, META = "openvino_int8", "int8.json"  # the runtime reads chunk_frames from META
COMPRESSION = "nncf.compress_weights INT8_ASYM (per output channel), fp32 activations"


def _cell(gx: torch.Tensor, h: torch.Tensor, c: torch.Tensor, w_hh: torch.Tensor):
    """One LSTM step from the input product gx (B, 4H) (bias included), PyTorch's gate order i, f, g, o."""
    i, f, g, o = (gx + h @ w_hh.t()).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _lstm_layer(lstm: nn.LSTM, x: torch.Tensor, lens: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
    """A one-layer ``nn.LSTM`` over x (B, T, I) as MatMuls, T unrolled; rows stop updating at ``lens``."""
    gx = x @ lstm.weight_ih_l0.t() + (lstm.bias_ih_l0 + lstm.bias_hh_l0)
    outs = []
    for t in range(x.size(1)):
        h_new, c_new = _cell(gx[:, t], h, c, lstm.weight_hh_l0)
        keep = (lens > t)[:, None]
        h, c = torch.where(keep, h_new, h), torch.where(keep, c_new, c)
        outs.append(h_new)
    return torch.stack(outs, dim=1), h, c


class MatMulEncoderGraph(nn.Module):
    """``EncoderGraph`` with the LSTMs as MatMuls over a chunk of fixed length."""

    def __init__(self, model) -> None:
        super().__init__()
        self.encoder = model.encoder

    def forward(self, frames, frame_lens, h_in, c_in):
        enc = self.encoder
        x, lens = enc.frontend.norm(frames), frame_lens
        hs, cs = [], []
        for i, (lstm, norm) in enumerate(zip(enc.lstms, enc.norms)):
            out, h, c = _lstm_layer(lstm, x, lens, h_in[i], c_in[i])
            x = norm(out if i == 0 else x + out)
            if i == enc.cfg.time_reduction_layer:
                x, lens = time_reduce(x, lens, enc.cfg.time_reduction)
            hs.append(h)
            cs.append(c)
        return enc.proj(x), lens, torch.stack(hs), torch.stack(cs)


class MatMulPredictorGraph(nn.Module):
    """The LSTM prediction network's step (one token) with its LSTM layers as MatMuls."""

    def __init__(self, model) -> None:
        super().__init__()
        self.predictor = model.predictor

    def forward(self, tokens, h_in, c_in):
        p = self.predictor
        x = p.embed(tokens[:, 0])
        hs, cs = [], []
        for i in range(p.cfg.pred_layers):
            gx = x @ getattr(p.lstm, f"weight_ih_l{i}").t() + (
                getattr(p.lstm, f"bias_ih_l{i}") + getattr(p.lstm, f"bias_hh_l{i}")
            )
            x, c = _cell(gx, h_in[i], c_in[i], getattr(p.lstm, f"weight_hh_l{i}"))
            hs.append(x)
            cs.append(c)
        return p.proj(x), torch.stack(hs), torch.stack(cs)


def int8_graph_modules(model) -> dict[str, nn.Module]:
    if not model.encoder.streaming:
        raise ValueError("int8 streaming graphs need the streaming (LSTM) encoder")
    mods = graph_modules(model)  # the joint (and a stateless predictor) have no LSTM: as exported
    mods["encoder"] = MatMulEncoderGraph(model).eval()
    if predictor_kind(model) == "lstm":
        mods["predictor"] = MatMulPredictorGraph(model).eval()
    return mods


def compress_int8(ov_model):
    import nncf

    return nncf.compress_weights(ov_model, mode=nncf.CompressWeightsMode.INT8_ASYM)


def export_int8(
    model, out_dir: str | os.PathLike, *, feature_dim: int, chunk_frames: int, opset: int = 17
) -> dict[str, Path]:
    """Write ``<out_dir>/openvino_int8/<graph>/model.xml``; returns the paths by graph name.
    ``chunk_frames``: stacked frames per encoder call (the streaming chunk), a multiple of the
    time reduction; written to ``openvino_int8/int8.json`` with the compression used."""
    model = model.eval().cpu()
    cfg = model.encoder.cfg
    r = cfg.time_reduction if cfg.time_reduction_layer >= 0 else 1
    if chunk_frames < 1 or chunk_frames % r:
        raise ValueError(f"chunk_frames must be a positive multiple of the time reduction ({r}), got {chunk_frames}")
    kind = predictor_kind(model)
    mods, ex = int8_graph_modules(model), trace_examples(model, feature_dim)
    h, c = ex["encoder"][2], ex["encoder"][3]
    ex["encoder"] = (torch.randn(2, chunk_frames, feature_dim * cfg.stack), torch.tensor([chunk_frames, 3]), h, c)
    paths: dict[str, Path] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in GRAPHS:
            inputs, outputs = graph_io(name, True, kind)
            dynamic = STATELESS_PREDICTOR_DYNAMIC if name == "predictor" and kind == "stateless" else DYNAMIC[name]
            if name == "encoder":  # the chunk's length is fixed: the loop over it is unrolled
                dynamic = {k: {a: n for a, n in v.items() if n == "batch"} for k, v in dynamic.items()}
            onnx_path = trace_graph(mods[name], ex[name], Path(tmp) / f"{name}.onnx", (inputs, outputs), dynamic, opset)
            paths[name] = export_openvino(onnx_path, Path(out_dir) / FOLDER / name, transform=compress_int8)
    meta = {"chunk_frames": chunk_frames, "compression": COMPRESSION, "nncf": _nncf_version()}
    paths["meta"] = atomic_write_json(Path(out_dir) / FOLDER / META, meta)
    return paths


def _nncf_version() -> str:
    from importlib.metadata import version

    return version("nncf")
