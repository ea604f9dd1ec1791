"""The RNN-Transducer model: edgedict preset sizes, shapes, padding invariance, the fp32 loss."""

from __future__ import annotations

import pytest
import torch

from asr_core.models import build_model, model_config
from asr_core.models.rnnt import rnnt_model, rnnt_tiny, stack_frames, time_reduce


def _n(model) -> int:
    return sum(p.numel() for p in model.parameters())


E4D1_OUTSIDE_1PCT = (
    "REFERENCE.md gives 3.3 M; within 1% is <= 3,333,000; edgedict's E4D1 (flagfiles/E4D1.txt shapes, rnnt/models.py "
    "layers, V = 2048) has 3,341,536 (+1.26%): no counting convention of those shapes gets within 1% (one "
    "merged LSTM bias as in the OpenVINO IR: 3,336,416, +1.10%; also without LayerNorm affines: +1.03%). "
    "docs/rnnt.md gives the derivation; the preset stays faithful to the reference."
)


@pytest.mark.parametrize("preset, exact", [("e4d1", 3_341_536), ("e6d2", 50_778_080)])
def test_preset_parameter_counts_are_edgedicts(preset, exact):
    """edgedict's flagfile shapes with its 2048-piece BPE vocabulary (formula in rnnt/config.py)."""
    assert _n(build_model("rnnt", preset, 2048)) == exact


@pytest.mark.parametrize(
    "preset, reference",
    [pytest.param("e4d1", 3.3e6, marks=pytest.mark.xfail(strict=True, reason=E4D1_OUTSIDE_1PCT)), ("e6d2", 50.8e6)],
)
def test_preset_parameter_counts_within_1pct_of_the_reference(preset, reference):
    """The presets E4D1 (3.3 M parameters) and E6D2 (50.8 M) of REFERENCE.md, within 1% (V = 2048).

    E6D2 passes (-0.04%). E4D1 is an expected failure, strict: the faithful preset is 1.26% above
    (E4D1_OUTSIDE_1PCT); should it ever come within 1%, this test fails and the note must go."""
    n = _n(build_model("rnnt", preset, 2048))
    assert abs(n - reference) / reference <= 0.01, f"{preset}: {n:,} is {n / reference - 1:+.2%} from {reference:,.0f}"


def test_e4d1_counting_conventions_stay_outside_1pct():
    """The README's derivation: the conventions a reference count could have used, on the real module."""
    model = build_model("rnnt", "e4d1", 2048)
    total = _n(model)
    hh_bias = sum(p.numel() for name, p in model.named_parameters() if "bias_hh" in name)
    ln = sum(p.numel() for m in model.modules() if isinstance(m, torch.nn.LayerNorm) for p in m.parameters())
    assert (total, hh_bias, ln) == (3_341_536, 5_120, 2_528)
    for n in (total, total - hh_bias, total - hh_bias - ln):  # PyTorch; one LSTM bias (ONNX -> IR); no LN affine
        assert n > 3.3e6 * 1.01


def test_tiny_shapes_and_lengths():
    torch.manual_seed(0)
    model = build_model("rnnt", "tiny", 20).eval()
    x, x_lens = torch.randn(2, 80, 37), torch.tensor([37, 20])
    y = torch.randint(1, 20, (2, 4))
    logits, f_lens = model.lattice(x, x_lens, y)
    # 37 frames -> 13 stacks of 3 -> 7 after the 2x reduction; 20 -> 7 -> 4
    assert logits.shape == (2, 7, 5, 20) and f_lens.tolist() == [7, 4]
    assert model.encoder.output_lengths(x_lens).tolist() == [7, 4]
    assert logits.dtype == torch.float32


def test_batch_equals_single_despite_padding():
    """Padding never leaks into valid frames: stacking and the time reduction zero it."""
    torch.manual_seed(0)
    model = build_model("rnnt", "tiny", 20).eval()
    a, b = torch.randn(1, 80, 41), torch.randn(1, 80, 23)
    batch = torch.zeros(2, 80, 41)
    batch[0], batch[1, :, :23] = a[0], b[0]
    batch[1, :, 23:] = 5.0  # garbage in the padding
    with torch.no_grad():
        f, f_lens = model.encoder(batch, torch.tensor([41, 23]))
        fb, fb_lens = model.encoder(b, torch.tensor([23]))
    assert f_lens.tolist() == [7, 4] and fb_lens.tolist() == [4]
    torch.testing.assert_close(f[1, :4], fb[0], rtol=1e-5, atol=1e-6)


def test_stack_and_reduce_pad_with_zeros():
    x = torch.arange(2 * 2 * 5, dtype=torch.float32).reshape(2, 2, 5)
    s, s_lens = stack_frames(x, torch.tensor([5, 4]), 3)
    assert s.shape == (2, 2, 6) and s_lens.tolist() == [2, 2]
    assert s[0, 1].tolist() == [3.0, 8.0, 4.0, 9.0, 0.0, 0.0]  # frames 3, 4 and a zero frame
    assert s[1, 1].tolist() == [13.0, 18.0, 0.0, 0.0, 0.0, 0.0]  # frame 4 is past row 1's length
    r, r_lens = time_reduce(torch.ones(1, 3, 2), torch.tensor([3]), 2)
    assert r[0].tolist() == [[1.0, 1.0], [0.5, 0.5]] and r_lens.tolist() == [2]


def test_loss_is_fp32_under_autocast_and_trains(ov_bf16):
    if not ov_bf16:
        pytest.skip("this CPU has no bf16 support: oneDNN has no bf16 LSTM primitive here")
    torch.manual_seed(0)
    model = rnnt_model(rnnt_tiny(), 12)
    x, x_lens = torch.randn(3, 80, 60), torch.tensor([60, 45, 30])
    y, y_lens = torch.randint(1, 12, (3, 5)), torch.tensor([5, 3, 2])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, _ = model.lattice(x, x_lens, y)
        loss = model(x, x_lens, y, y_lens)
    assert logits.dtype == torch.float32 and loss.dtype == torch.float32 and torch.isfinite(loss)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(15):
        opt.zero_grad()
        loss = model(x, x_lens, y, y_lens)
        loss.backward()
        opt.step()
        first = first if first is not None else float(loss.detach())
    assert float(loss.detach()) < 0.5 * first


def test_config_checks():
    with pytest.raises(ValueError, match="unknown RNNTConfig keys"):
        model_config("rnnt", "tiny", enc_hiden=3)
    with pytest.raises(ValueError, match="time_reduction_layer"):
        model_config("rnnt", "tiny", time_reduction_layer=5)
    assert model_config("rnnt", "e6d2").subsampling == 6


def test_auxiliary_ctc_head_adds_to_the_loss_only():
    torch.manual_seed(0)
    plain = rnnt_model(rnnt_tiny(), 12)
    torch.manual_seed(0)
    aux = rnnt_model(rnnt_tiny(ctc_weight=0.5), 12)
    assert aux.ctc_head is not None and plain.ctc_head is None
    assert _n(aux) - _n(plain) == 64 * 12 + 12
    x, x_lens = torch.randn(2, 80, 60), torch.tensor([60, 45])
    y, y_lens = torch.randint(1, 12, (2, 4)), torch.tensor([4, 3])
    with torch.no_grad():
        assert float(aux(x, x_lens, y, y_lens)) > float(plain(x, x_lens, y, y_lens))  # same weights, CTC added
        torch.testing.assert_close(aux.lattice(x, x_lens, y)[0], plain.lattice(x, x_lens, y)[0])


def test_stateless_predictor_steps_equal_the_whole_sequence_and_decodes():
    from asr_core.decoding.rnnt_greedy import greedy_decode

    torch.manual_seed(0)
    model = build_model("rnnt", "tiny", 12, head_config={"predictor": "stateless", "context_size": 3})
    pred = model.predictor
    assert not any(isinstance(m, torch.nn.LSTM) for m in pred.modules())
    y = torch.randint(1, 12, (2, 5))
    whole = pred(y)
    g, state = pred.step(torch.zeros(2, 1, dtype=torch.long))  # the start symbol (blank)
    steps = [g]
    for i in range(5):
        g, state = pred.step(y[:, i : i + 1], state)
        steps.append(g)
    torch.testing.assert_close(torch.cat(steps, dim=1), whole)
    assert state[0].shape == (1, 2, 2) and torch.equal(state[0][0], y[:, -2:])  # the last context_size - 1 tokens
    # the output after a token reads only the context_size tokens up to it
    y2 = y.clone()
    y2[:, 0] = (y[:, 0] % 11) + 1
    torch.testing.assert_close(pred(y2)[:, 4:], whole[:, 4:])
    x, x_lens = torch.randn(2, 80, 60), torch.tensor([60, 45])
    loss = model(x, x_lens, y, torch.tensor([5, 3]))
    loss.backward()
    assert pred.conv.weight.grad is not None and torch.isfinite(loss)
    model.eval()
    alone = greedy_decode(model, x[1:, :, :45], x_lens[1:])
    assert greedy_decode(model, x, x_lens)[1] == alone[0]


def test_head_config_checks_the_predictor():
    with pytest.raises(ValueError, match="predictor must be one of"):
        build_model("rnnt", "tiny", 12, head_config={"predictor": "gru"})
    with pytest.raises(ValueError, match="context_size must be >= 1"):
        build_model("rnnt", "tiny", 12, head_config={"predictor": "stateless", "context_size": 0})


def test_stateless_predictor_exports_and_decodes_the_same_on_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime")
    from asr_core.decoding.rnnt_stream import TorchBackend, offline_greedy
    from asr_core.export.rnnt_onnx import export_rnnt
    from asr_core.export.rnnt_runtime import load_backend, write_meta

    torch.manual_seed(0)
    model = build_model("rnnt", "tiny", 12, head_config={"predictor": "stateless", "context_size": 2}).eval()
    x, x_lens = torch.randn(2, 80, 60), torch.tensor([60, 45])
    export_rnnt(model, tmp_path, feature_dim=80, openvino=False)
    write_meta(model, tmp_path)
    torch_be, onnx_be = TorchBackend(model), load_backend(tmp_path, "onnxruntime", threads=1)
    g_ref, s_ref = torch_be.predict(torch.tensor([[3], [5]]), torch_be.predictor_state(2))
    g_got, s_got = onnx_be.predict(torch.tensor([[3], [5]]), onnx_be.predictor_state(2))
    torch.testing.assert_close(g_got, g_ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(s_got[0], s_ref[0])
    assert offline_greedy(onnx_be, x, x_lens) == offline_greedy(torch_be, x, x_lens)
