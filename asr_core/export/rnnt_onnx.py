"""A transducer as three ONNX graphs with state in/out (edgedict ``export_onnx.py``), and OpenVINO IR.

    encoder.onnx    streaming encoders (the LSTM transcriber), state in/out:
                    frames (B, S, N*k) float32   stacked, not normalised (the LayerNorm is inside)
                    frame_lens (B,) int64
                    h_in, c_in (L, B, H) float32
                 -> enc (B, T', D), enc_lens (B,) int64, h_out, c_out
                    any other encoder (e.g. a Conformer), whole utterances:
                    feats (B, N, F) float32, feat_lens (B,) int64 -> enc (B, T', D), enc_lens (B,)
    predictor.onnx  tokens (B, 1) int64, h_in, c_in (layers, B, P_h) -> g (B, P), h_out, c_out
                    stateless predictor: tokens (B, 1), ctx_in (1, B, C - 1) int64 -> g (B, P), ctx_out
    joint.onnx      enc (B, D), g (B, P) -> logits (B, V)

Batch and time axes are dynamic. A streaming decoder feeds the encoder ``chunk_frames``
stacked frames at a time with its state carried (``asr_core.export.rnnt_runtime``). The IR
goes to ``openvino/<graph>/model.xml`` (fp32 weights; dynamic shapes: the runtime reshapes to
the chunk's shape once). TorchScript exporter (``dynamo=False``), as for the CTC models.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from asr_core.export.to_openvino import export_openvino
from asr_core.io.atomic import atomic_path

GRAPHS = ("encoder", "predictor", "joint")
IO = {
    "encoder": (("frames", "frame_lens", "h_in", "c_in"), ("enc", "enc_lens", "h_out", "c_out")),
    "predictor": (("tokens", "h_in", "c_in"), ("g", "h_out", "c_out")),
    "joint": (("enc", "g"), ("logits",)),
}


OFFLINE_ENCODER_IO = (("feats", "feat_lens"), ("enc", "enc_lens"))
STATELESS_PREDICTOR_IO = (("tokens", "ctx_in"), ("g", "ctx_out"))


def predictor_kind(model) -> str:
    """``lstm`` or ``stateless`` (its head config's ``predictor``)."""
    return getattr(model.predictor.cfg, "predictor", "lstm")


def graph_io(name: str, streaming: bool, predictor: str = "lstm") -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(input names, output names) of graph ``name``."""
    if name == "encoder" and not streaming:
        return OFFLINE_ENCODER_IO
    if name == "predictor" and predictor == "stateless":
        return STATELESS_PREDICTOR_IO
    return IO[name]


class OfflineEncoderGraph(nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.encoder = model.encoder

    def forward(self, feats, feat_lens):
        return self.encoder(feats, feat_lens)


class EncoderGraph(nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.encoder = model.encoder

    def forward(self, frames, frame_lens, h_in, c_in):
        enc, enc_lens, (h, c) = self.encoder.encode(self.encoder.frontend.norm(frames), frame_lens, (h_in, c_in))
        return enc, enc_lens, h, c


class PredictorGraph(nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.predictor = model.predictor

    def forward(self, tokens, *state):
        g, state = self.predictor.step(tokens, state)
        return (g[:, -1], *state)


class JointGraph(nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.joint = model.joint

    def forward(self, enc, g):
        return self.joint(enc, g)


def graph_modules(model) -> dict[str, nn.Module]:
    encoder = EncoderGraph(model) if model.encoder.streaming else OfflineEncoderGraph(model)
    # eval(): the exporter puts each wrapper back in its own mode afterwards, recursively, and a new
    # module is in training mode: the model's dropout and BatchNorm would be left training
    return {
        n: g.eval()
        for n, g in (("encoder", encoder), ("predictor", PredictorGraph(model)), ("joint", JointGraph(model)))
    }


def examples(model, feature_dim: int) -> dict[str, tuple]:
    """Trace inputs: two rows of different lengths (odd, so the time reduction's padding is traced)."""
    enc = model.encoder
    if enc.streaming:
        enc_state = enc.zero_state(2)
        encoder = (
            torch.randn(2, 11, feature_dim * enc.cfg.stack),
            torch.tensor([11, 7]),
            torch.randn_like(enc_state[0]),
            torch.randn_like(enc_state[1]),
        )
    else:
        encoder = (torch.randn(2, feature_dim, 96), torch.tensor([96, 57]))
    pred_state = model.predictor.zero_state(2)
    if predictor_kind(model) == "stateless":
        predictor = (torch.tensor([[1], [2]]), torch.randint_like(pred_state[0], 1, model.num_outputs))
    else:
        predictor = (torch.tensor([[1], [2]]), torch.randn_like(pred_state[0]), torch.randn_like(pred_state[1]))
    return {
        "encoder": encoder,
        "predictor": predictor,
        "joint": (torch.randn(2, enc.output_dim), torch.randn(2, model.predictor.output_dim)),
    }


DYNAMIC = {
    "encoder": {
        "frames": {0: "batch", 1: "time"},
        "frame_lens": {0: "batch"},
        "h_in": {1: "batch"},
        "c_in": {1: "batch"},
        "enc": {0: "batch", 1: "time_out"},
        "enc_lens": {0: "batch"},
        "h_out": {1: "batch"},
        "c_out": {1: "batch"},
    },
    "predictor": {
        "tokens": {0: "batch"},
        "h_in": {1: "batch"},
        "c_in": {1: "batch"},
        "g": {0: "batch"},
        "h_out": {1: "batch"},
        "c_out": {1: "batch"},
    },
    "joint": {"enc": {0: "batch"}, "g": {0: "batch"}, "logits": {0: "batch"}},
}
STATELESS_PREDICTOR_DYNAMIC = {
    "tokens": {0: "batch"},
    "ctx_in": {1: "batch"},
    "g": {0: "batch"},
    "ctx_out": {1: "batch"},
}
OFFLINE_ENCODER_DYNAMIC = {
    "feats": {0: "batch", 2: "time"},
    "feat_lens": {0: "batch"},
    "enc": {0: "batch", 1: "time_out"},
    "enc_lens": {0: "batch"},
}


def trace_graph(module, example, path: Path, io: tuple, dynamic: dict, opset: int) -> Path:
    """One graph to ``path`` with the TorchScript exporter (written atomically, then checked)."""
    import onnx

    with atomic_path(path) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning)  # LSTM batch_first notes
        torch.onnx.export(
            module,
            example,
            str(tmp),
            dynamo=False,
            opset_version=opset,
            input_names=list(io[0]),
            output_names=list(io[1]),
            dynamic_axes=dynamic,
        )
    onnx.checker.check_model(str(path))
    return path


def export_rnnt(
    model, out_dir: str | os.PathLike, *, feature_dim: int, opset: int = 17, openvino: bool = True
) -> dict[str, Path]:
    """Write ``<out_dir>/<graph>.onnx`` (and ``openvino/<graph>/model.xml``); returns the paths by name.
    ``feature_dim``: the mel bins the front end gives (N)."""
    out_dir = Path(out_dir)
    model = model.eval().cpu()
    streaming, predictor = model.encoder.streaming, predictor_kind(model)
    mods, ex = graph_modules(model), examples(model, feature_dim)
    paths: dict[str, Path] = {}
    for name in GRAPHS:
        path = out_dir / f"{name}.onnx"
        inputs, outputs = graph_io(name, streaming, predictor)
        dynamic = DYNAMIC[name]
        if name == "encoder" and not streaming:
            dynamic = OFFLINE_ENCODER_DYNAMIC
        elif name == "predictor" and predictor == "stateless":
            dynamic = STATELESS_PREDICTOR_DYNAMIC
        trace_graph(mods[name], ex[name], path, (inputs, outputs), dynamic, opset)
        paths[name] = path
        if openvino:
            paths[f"openvino/{name}"] = export_openvino(path, out_dir / "openvino" / name)
    return paths
