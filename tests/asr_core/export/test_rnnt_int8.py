"""The int8 streaming graphs: the LSTMs rewritten as MatMuls compute what the LSTM ops do (fp32,
before compression), short chunks are masked as unpadded ones, and the export stage publishes the
compressed graphs gated on WER."""

from __future__ import annotations

import json

import pytest
import torch

from asr_core.export.rnnt_int8 import MatMulEncoderGraph, MatMulPredictorGraph
from asr_core.export.rnnt_onnx import EncoderGraph, PredictorGraph
from asr_core.export.rnnt_runtime import load_backend
from asr_core.models import build_model

HEAD = {"predictor": "lstm", "embed_dim": 8, "pred_hidden": 12, "pred_layers": 2, "pred_proj": 10}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("rnnt", "tiny", 11, head_config=HEAD, enc_layers=3, enc_hidden=16, enc_proj=8).eval()


@pytest.mark.parametrize("n_valid", [10, 7, 1])
def test_matmul_encoder_equals_the_lstm_encoder_on_padded_chunks(model, n_valid):
    """A chunk padded to the graph's fixed length, masked by frame_lens, gives the unpadded chunk's
    valid outputs and state."""
    g = torch.Generator().manual_seed(n_valid)
    frames = torch.randn(1, 10, 80 * model.encoder.cfg.stack, generator=g)
    h, c = (0.5 * torch.randn(3, 1, 16, generator=g) for _ in range(2))
    with torch.no_grad():
        ref = EncoderGraph(model)(frames[:, :n_valid], torch.tensor([n_valid]), h, c)
        got = MatMulEncoderGraph(model)(frames, torch.tensor([n_valid]), h, c)
    assert torch.equal(got[1], ref[1])
    n = int(ref[1][0])
    torch.testing.assert_close(got[0][:, :n], ref[0][:, :n], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[2], ref[2], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[3], ref[3], rtol=1e-5, atol=1e-5)


def test_matmul_predictor_equals_the_lstm_predictor(model):
    tokens = torch.tensor([[3], [0]])
    h, c = (torch.randn(2, 2, 12) for _ in range(2))
    with torch.no_grad():
        ref, got = PredictorGraph(model)(tokens, h, c), MatMulPredictorGraph(model)(tokens, h, c)
    for r, o in zip(ref, got):
        torch.testing.assert_close(o, r, rtol=1e-5, atol=1e-5)


def test_int8_graphs_export_compressed_and_encode_any_length(model, tmp_path):
    from asr_core.export.rnnt_int8 import export_int8
    from asr_core.export.rnnt_onnx import export_rnnt
    from asr_core.export.rnnt_runtime import write_meta

    export_rnnt(model, tmp_path, feature_dim=80, openvino=True)
    write_meta(model, tmp_path)
    export_int8(model, tmp_path, feature_dim=80, chunk_frames=4)
    meta = json.loads((tmp_path / "openvino_int8" / "int8.json").read_text())
    assert meta["chunk_frames"] == 4 and meta["nncf"]
    xml = (tmp_path / "openvino_int8" / "encoder" / "model.xml").read_text()
    assert 'element_type="u8"' in xml or 'element_type="i8"' in xml  # the weights are stored in 8 bits
    fp32, int8 = load_backend(tmp_path, "openvino", threads=1), load_backend(tmp_path, "openvino_int8", threads=1)
    assert int8.name == "openvino_int8"
    s = torch.randn(1, 11, 240)  # three pieces of 4 frames, the last padded
    ref = fp32.encode(s, torch.tensor([11]), fp32.encoder_state(1))
    got = int8.encode(s, torch.tensor([11]), int8.encoder_state(1))
    assert got[0].shape == ref[0].shape and torch.equal(got[1], ref[1])
    assert float((got[0] - ref[0]).abs().max()) < 0.1 * float(ref[0].abs().max())
    with pytest.raises(FileNotFoundError, match="int8"):
        load_backend(tmp_path / "nowhere", "openvino_int8")
    with pytest.raises(ValueError, match="multiple of the time reduction"):
        export_int8(model, tmp_path / "bad", feature_dim=80, chunk_frames=3)
