"""Conformer encoder: shapes and lengths, padding invariance, relative attention maths,
training, config validation, parameter counts and ONNX parity."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from asr_core.models.conformer import (
    PRESETS,
    ConformerConfig,
    ConformerEncoder,
    rel_shift,
    relative_positions,
)
from asr_core.models.rnnt import Joint, Predictor, RNNTConfig

F_IN = 20


def small(**overrides) -> ConformerConfig:
    """Two layers of D 32: every code path, milliseconds per forward."""
    base = dict(in_features=F_IN, d_model=32, num_layers=2, num_heads=4, conv_kernel=5, subsampling_channels=8)
    return ConformerConfig(**{**base, **overrides})


def eval_encoder(seed: int = 0, **overrides) -> ConformerEncoder:
    """An eval-mode encoder whose BatchNorm running statistics are not the identity."""
    torch.manual_seed(seed)
    enc = ConformerEncoder(small(**overrides)).eval()
    for m in enc.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    return enc


def padded_batch(lens: list[int], fill: float = float("nan")) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, F, max(lens)) features whose padding holds ``fill``: it must never reach a valid frame."""
    x = torch.randn(len(lens), F_IN, max(lens))
    for b, n in enumerate(lens):
        x[b, :, n:] = fill
    return x, torch.tensor(lens)


def test_output_lengths_match_forward_and_conv_arithmetic():
    enc = eval_encoder()
    conv = lambda n: (n + 2 * 1 - 3) // 2 + 1  # Conv2d(k 3, stride 2, padding 1) frames
    lens = torch.arange(0, 50)
    assert torch.equal(enc.output_lengths(lens), torch.tensor([max(conv(conv(n)), 0) for n in range(50)]))
    assert enc.output_lengths(torch.tensor([0, 1, 4, 5, 300])).tolist() == [0, 1, 1, 2, 75]
    assert enc.subsampling == 4 and enc.output_dim == 32
    with torch.no_grad():
        for t in (1, 2, 3, 7, 8, 9, 33):
            y, y_lens = enc(torch.randn(2, F_IN, t), torch.tensor([t, max(t - 3, 0)]))
            assert y.shape == (2, int(enc.output_lengths(torch.tensor(t))), 32)
            assert torch.equal(y_lens, enc.output_lengths(torch.tensor([t, max(t - 3, 0)])))


@pytest.mark.parametrize(
    "overrides",
    [dict(conv_norm="batch"), dict(conv_norm="layer"), dict(conv_norm="batch", conv_kernel=6)],
    ids=["batchnorm", "layernorm", "even-kernel"],
)
def test_padded_batch_equals_each_utterance_alone(overrides):
    enc = eval_encoder(**overrides)
    lens = [61, 40, 23, 5]
    x, x_lens = padded_batch(lens)
    with torch.no_grad():
        y, y_lens = enc(x, x_lens)
        for b, n in enumerate(lens):
            y1, y1_lens = enc(x[b : b + 1, :, :n], x_lens[b : b + 1])
            assert y1_lens.item() == y_lens[b].item() == y1.shape[1]
            torch.testing.assert_close(y[b, : y1.shape[1]], y1[0], atol=1e-5, rtol=1e-5)
    assert torch.isfinite(y).all()


def test_zero_length_utterance_is_finite_and_does_not_disturb_the_batch():
    enc = eval_encoder()
    x, x_lens = padded_batch([30, 0])
    with torch.no_grad():
        y, y_lens = enc(x, x_lens)
        y1, _ = enc(x[:1], x_lens[:1])
    assert y_lens.tolist() == [8, 0] and torch.isfinite(y).all()
    torch.testing.assert_close(y[0], y1[0], atol=1e-5, rtol=1e-5)
    enc.train()
    y, _ = enc(x.nan_to_num(), x_lens)
    y.square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in enc.parameters())


def test_relative_positions_and_rel_shift():
    torch.manual_seed(0)
    t, d = 6, 8
    inv_freq = torch.exp(torch.arange(0, d, 2) * (-math.log(10000.0) / d))
    pos = relative_positions(t, inv_freq)
    assert pos.shape == (2 * t - 1, d)
    for dist in (-3, 0, 5):  # row t - 1 - dist holds distance dist
        row = pos[t - 1 - dist]
        torch.testing.assert_close(row[0::2], torch.sin(dist * inv_freq))
        torch.testing.assert_close(row[1::2], torch.cos(dist * inv_freq))
    x = torch.randn(2, 3, t, 2 * t - 1)
    shifted = rel_shift(x, t)
    for i in range(t):
        for j in range(t):
            assert torch.equal(shifted[..., i, j], x[..., i, t - 1 - (i - j)])


def test_attention_is_the_transformer_xl_score_written_out():
    """softmax_j(((q_i + u).k_j + (q_i + v).W_R r(i - j)) / sqrt(d_k)) over valid keys j, from explicit (i, j) tables."""
    torch.manual_seed(0)
    b, t, d, h = 2, 5, 16, 2
    enc = ConformerEncoder(small(d_model=d, num_heads=h)).eval()
    attn = enc.layers[0].attn
    with torch.no_grad():
        attn.pos_bias_u.normal_()
        attn.pos_bias_v.normal_()
    x, valid = torch.randn(b, t, d), torch.tensor([[True] * t, [True] * 3 + [False] * 2])
    pos = relative_positions(t, enc.inv_freq)
    with torch.no_grad():
        y = attn(x, pos, valid)
        heads = lambda z: z.unflatten(-1, (h, d // h))
        q, k, v = heads(attn.q_proj(x)), heads(attn.k_proj(x)), heads(attn.v_proj(x))  # (B, T, H, d_k)
        dist = torch.arange(t)[:, None] - torch.arange(t)[None, :]  # i - j
        r = heads(attn.pos_proj(pos))[t - 1 - dist]  # (T, T, H, d_k): W_R r(i - j)
        scores = torch.einsum("bihc,bjhc->bhij", q + attn.pos_bias_u, k)
        scores = scores + torch.einsum("bihc,ijhc->bhij", q + attn.pos_bias_v, r)
        scores = (scores / math.sqrt(d // h)).masked_fill(~valid[:, None, None, :], float("-inf"))
        ref = attn.out_proj(torch.einsum("bhij,bjhc->bihc", scores.softmax(-1), v).flatten(2))
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)


def test_two_training_steps_have_finite_gradients_everywhere():
    torch.manual_seed(0)
    enc = ConformerEncoder(small())
    opt = torch.optim.Adam(enc.parameters(), lr=1e-3)
    x, x_lens = padded_batch([48, 31, 17], fill=0.0)
    target = torch.randn(3, int(enc.output_lengths(torch.tensor(48))), 32)
    losses = []
    for _ in range(2):
        opt.zero_grad()
        y, y_lens = enc(x, x_lens)
        valid = (torch.arange(y.shape[1]) < y_lens[:, None])[:, :, None]
        loss = ((y - target).square() * valid).sum() / valid.sum()
        loss.backward()
        for name, p in enc.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert enc.layers[0].attn.pos_bias_u.grad.abs().sum() > 0
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses) and losses[1] != losses[0]


def test_from_dict_round_trips_and_rejects_unknown_keys():
    cfg = PRESETS["tiny"](conv_norm="layer")
    assert ConformerConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown ConformerConfig keys \\['d_modle'\\]"):
        ConformerConfig.from_dict({"d_modle": 256})
    with pytest.raises(ValueError, match="unknown"):
        PRESETS["s"](kernel=31)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"num_layers": 0}, "num_layers must be an integer >= 1, got 0"),
        ({"conv_kernel": 2.5}, "conv_kernel must be an integer >= 1, got 2.5"),
        ({"d_model": 30, "num_heads": 4}, "d_model=30 must be divisible by num_heads=4"),
        ({"d_model": 9, "num_heads": 3}, "d_model must be even, got 9"),
        ({"dropout": 1.0}, "dropout must be in \\[0, 1\\), got 1.0"),
        ({"attention_dropout": -0.1}, "attention_dropout must be in \\[0, 1\\), got -0.1"),
        ({"conv_norm": "group"}, "conv_norm must be one of \\('batch', 'layer'\\), got 'group'"),
    ],
)
def test_config_rejects_bad_values(bad, message):
    with pytest.raises(ValueError, match=message):
        ConformerConfig.from_dict(bad)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


ENCODER_PARAMETERS = {"tiny": 2_239_760, "s": 8_713_152, "m": 27_331_584, "l": 115_120_128}
# the paper's transducer convention (module docstring): V = 1024, E = P = J = decoder units
DECODER_UNITS = {"s": 320, "m": 640, "l": 640}
PAPER_TOTAL = {"s": 10.3e6, "m": 30.7e6, "l": 118.8e6}
TRANSDUCER_PARAMETERS = {"s": 10_442_816, "m": 32_909_568, "l": 120_861_952}
VOCAB = 1024


@pytest.mark.parametrize("name", sorted(ENCODER_PARAMETERS))
def test_encoder_parameter_counts(name):
    with torch.device("meta"):  # counting needs shapes, not values
        enc = ConformerEncoder(PRESETS[name]())
    assert count(enc) == ENCODER_PARAMETERS[name]


@pytest.mark.parametrize("name", sorted(TRANSDUCER_PARAMETERS))
def test_transducer_parameter_counts_in_the_paper_convention(name):
    cfg, units = PRESETS[name](), DECODER_UNITS[name]
    with torch.device("meta"):
        rnnt = RNNTConfig(embed_dim=units, pred_hidden=units, pred_layers=1, pred_proj=units, joint_dim=units)
        decoder = count(Predictor(rnnt, VOCAB)) + count(Joint(cfg.d_model, units, units, VOCAB))
        plain_lstm = count(nn.Embedding(VOCAB, units)) + count(nn.LSTM(units, units))  # without Predictor.proj
    total = ENCODER_PARAMETERS[name] + decoder
    assert total == TRANSDUCER_PARAMETERS[name]
    if name == "s":
        assert abs(total / PAPER_TOTAL["s"] - 1) < 0.015
        no_proj = ENCODER_PARAMETERS["s"] + plain_lstm + count(Joint(cfg.d_model, units, units, VOCAB))
        assert no_proj == 10_340_096 and abs(no_proj / PAPER_TOTAL["s"] - 1) < 0.005


def test_onnx_export_matches_onnxruntime_with_dynamic_batch_and_time(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    enc = eval_encoder(conv_kernel=6)  # the even kernel's asymmetric padding too
    path = tmp_path / "conformer.onnx"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Constant folding")  # F.pad's reversed-slice pads
        torch.onnx.export(
            enc,
            (torch.randn(2, F_IN, 40), torch.tensor([40, 23])),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["features", "feature_lens"],
            output_names=["encoded", "encoded_lens"],
            dynamic_axes={
                "features": {0: "batch", 2: "time"},
                "feature_lens": {0: "batch"},
                "encoded": {0: "batch", 1: "time_out"},
                "encoded_lens": {0: "batch"},
            },
        )
    onnx.checker.check_model(str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for lens in ([57, 30, 9], [11]):  # batch and time other than the trace's
        x, x_lens = padded_batch(lens)
        y, y_lens = sess.run(None, {"features": x.numpy(), "feature_lens": x_lens.numpy()})
        with torch.no_grad():
            ref, ref_lens = enc(x, x_lens)
        assert y.shape == tuple(ref.shape) and np.array_equal(y_lens, ref_lens.numpy()) and np.isfinite(y).all()
        for b, n in enumerate(ref_lens.tolist()):
            np.testing.assert_allclose(y[b, :n], ref[b, :n].numpy(), atol=1e-4, rtol=1e-4)
