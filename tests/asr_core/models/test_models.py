"""CTC convnet models: sizes, shapes, masking, loss, decoding, ONNX export, key mapping.

Full-size nets are built on the ``meta`` device (no memory, no compute); behaviour
is tested on the ``tiny`` presets, which share every code path with the full ones.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from asr_core.models import (
    CTCModel,
    Encoder,
    JasperConfig,
    QuartzNetConfig,
    build_model,
    build_model_from_config,
    ctc_loss,
    dle_jasper_to_model_keys,
    dle_to_nemo_keys,
    greedy_decode,
    model_config,
    model_to_dle_jasper_keys,
    nemo_to_dle_keys,
)
from asr_core.text.vocab import CharVocab

V = 29  # 28 characters + blank (last)
TINY = [("quartznet", "tiny"), ("jasper", "tiny")]


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_model(family: str, preset: str, **overrides) -> CTCModel:
    with torch.device("meta"):
        return build_model(family, preset, V, **overrides)


def tiny(family: str, seed: int = 0) -> CTCModel:
    torch.manual_seed(seed)
    model = build_model(family, "tiny", V)
    # Non-trivial BatchNorm statistics, so eval-mode tests see more than an identity.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_(0.0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


# ---------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    "family, preset, reference_m, exact",
    [
        ("quartznet", "5x5", 6.71, 6_713_181),
        ("quartznet", "10x5", 12.82, 12_818_781),
        ("quartznet", "15x5", 18.92, 18_924_381),  # = DLE's QuartzNet 15x5 layer by layer
        ("jasper", "10x5", 332.6, 332_632_349),
    ],
)
def test_parameter_counts_match_reference(family, preset, reference_m, exact):
    n = n_params(meta_model(family, preset))
    assert abs(n / 1e6 - reference_m) / reference_m < 0.005, n
    assert n == exact, n


@pytest.mark.parametrize("family", ["quartznet", "jasper"])
def test_tiny_presets_are_small(family):
    n = n_params(meta_model(family, "tiny"))
    assert 1_000_000 <= n <= 2_000_000, n


def test_layer_numbering_follows_dle():
    model = meta_model("quartznet", "15x5")
    assert len(model.encoder.layers) == 18  # C1, 15 blocks, C2, C3
    sd = model.state_dict()
    assert sd["encoder.layers.0.mconv.0.weight"].shape == (64, 1, 33)  # C1 depthwise
    assert sd["encoder.layers.0.mconv.1.weight"].shape == (256, 64, 1)  # C1 pointwise
    assert sd["encoder.layers.1.mconv.20.weight"].shape == (256, 1, 33)  # 5th sub-block depthwise
    assert sd["encoder.layers.1.res.0.0.weight"].shape == (256, 256, 1)
    assert sd["encoder.layers.16.mconv.0.weight"].shape == (512, 1, 87)  # C2
    assert model.encoder.layers[16].mconv[0].dilation == (2,)
    assert sd["decoder.layers.0.weight"].shape == (V, 1024, 1)
    assert not any(
        k.endswith(".bias") and k.startswith("encoder") and sd[k.replace("bias", "weight")].ndim == 3 for k in sd
    )
    jasper = meta_model("jasper", "10x5")
    assert len(jasper.encoder.layers[10].res) == 10  # B5's second block: 10 dense branches
    assert jasper.encoder.layers[11].res is None


# ---------------------------------------------------------------- interface, shapes, lengths


@pytest.mark.parametrize("family, preset", TINY)
def test_shapes_and_lengths(family, preset):
    model = tiny(family)
    x_lens = torch.tensor([101, 100, 7, 1, 0])
    x = torch.randn(len(x_lens), 64, 101)
    with torch.no_grad():
        log_probs, y_lens = model(x, x_lens)
    assert isinstance(model.encoder, Encoder)
    assert model.encoder.subsampling == 2
    assert log_probs.shape == (5, math.ceil(101 / 2), V)
    assert y_lens.tolist() == [math.ceil(n / 2) for n in x_lens.tolist()]
    assert torch.equal(model.encoder.output_lengths(x_lens), y_lens)
    assert torch.isfinite(log_probs).all()
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(5, 51), atol=1e-5)
    assert model.blank == V - 1 == CharVocab().blank


def test_log_probs_are_float32_under_autocast():
    model = tiny("quartznet")
    x, x_lens = torch.randn(2, 64, 40), torch.tensor([40, 30])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        log_probs, _ = model(x, x_lens)
    assert log_probs.dtype == torch.float32
    assert torch.isfinite(log_probs).all()


def test_encoder_interface():
    with pytest.raises(TypeError):
        Encoder()  # abstract
    enc = tiny("quartznet").encoder
    assert (enc.output_dim, enc.subsampling) == (512, 2)
    with torch.no_grad():
        y, _ = enc(torch.randn(2, 64, 30), torch.tensor([30, 20]))
    assert y.shape == (2, 15, enc.output_dim)
    with pytest.raises(AssertionError):
        enc(torch.randn(2, 80, 30), torch.tensor([30, 20]))  # wrong feature count


# ---------------------------------------------------------------- masking


@pytest.mark.parametrize("family, preset", TINY)
def test_utterance_alone_equals_padded_in_batch(family, preset):
    model = tiny(family)
    torch.manual_seed(1)
    short, long = torch.randn(1, 64, 57), torch.randn(1, 64, 140)
    batch = torch.zeros(2, 64, 140)
    batch[0, :, :57], batch[1] = short[0], long[0]
    with torch.no_grad():
        alone, alone_lens = model(short, torch.tensor([57]))
        padded, padded_lens = model(batch, torch.tensor([57, 140]))
        long_alone, _ = model(long, torch.tensor([140]))
    n = alone_lens.item()
    assert padded_lens.tolist() == [n, 70]
    torch.testing.assert_close(padded[0, :n], alone[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(padded[1], long_alone[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("family, preset", TINY)
def test_padding_content_does_not_reach_valid_outputs(family, preset):
    model = tiny(family)
    torch.manual_seed(2)
    x = torch.randn(3, 64, 90)
    x_lens = torch.tensor([90, 61, 12])
    garbage = x.clone()
    for b, n in enumerate(x_lens.tolist()):
        garbage[b, :, n:] = 1e4 * torch.randn(64, 90 - n)
    garbage[2, :, 50:] = float("nan")  # masked_fill also stops NaN/inf
    with torch.no_grad():
        clean, lens = model(x, x_lens)
        dirty, _ = model(garbage, x_lens)
    for b, n in enumerate(lens.tolist()):
        torch.testing.assert_close(dirty[b, :n], clean[b, :n], atol=1e-5, rtol=0)


# ---------------------------------------------------------------- CTC loss and decoding


def test_ctc_loss_decreases_when_overfitting_one_batch():
    vocab = CharVocab()
    torch.manual_seed(3)
    model = build_model("quartznet", "tiny", vocab.num_outputs).train()
    texts = ["hello world", "ctc loss"]
    targets = torch.nn.utils.rnn.pad_sequence([torch.tensor(vocab.encode(t)) for t in texts], batch_first=True)
    target_lens = torch.tensor([len(t) for t in texts])
    x, x_lens = torch.randn(2, 64, 80), torch.tensor([80, 64])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        log_probs, y_lens = model(x, x_lens)
        loss = ctc_loss(log_probs, y_lens, targets, target_lens)
        assert torch.isfinite(loss), loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_ctc_loss_blank_last_reduction_and_zero_infinity():
    torch.manual_seed(4)
    log_probs = torch.randn(2, 6, V).log_softmax(-1)
    lens = torch.tensor([6, 3])
    targets = torch.tensor([[1, 2, 3, 4], [5, 5, 6, 7]])  # 2nd: 4 labels + 1 repeat > 3 frames
    target_lens = torch.tensor([4, 4])
    per_utt = ctc_loss(log_probs, lens, targets, target_lens, reduction="none")
    assert per_utt[1] == 0 and per_utt[0] > 0  # zero_infinity=True by default
    assert ctc_loss(log_probs, lens, targets, target_lens) == per_utt.mean()
    assert torch.isinf(ctc_loss(log_probs, lens, targets, target_lens, zero_infinity=False))
    ref = torch.nn.functional.ctc_loss(
        log_probs.transpose(0, 1),
        targets,
        lens,
        target_lens,
        blank=V - 1,
        reduction="none",
        zero_infinity=True,
    )
    torch.testing.assert_close(per_utt, ref)
    with pytest.raises(ValueError, match="reduction"):
        ctc_loss(log_probs, lens, targets, target_lens, reduction="avg")


def test_greedy_decode_known_string():
    vocab = CharVocab()
    blank = vocab.blank

    def frames(spec: str) -> list[int]:  # "_" is a blank frame
        return [blank if c == "_" else vocab.encode(c)[0] for c in spec]

    utts = [frames("hh_e_ll_lo__"), frames("a_aa  a__zzz")]
    lens = torch.tensor([12, 7])  # the second one's "__zzz" lies past its length
    log_probs = torch.full((2, 12, vocab.num_outputs), -10.0)
    for b, ids in enumerate(utts):
        log_probs[b, torch.arange(12), torch.tensor(ids)] = -0.01
    decoded = greedy_decode(log_probs, lens)
    assert [vocab.decode(ids) for ids in decoded] == ["hello", "aa a"]
    assert greedy_decode(log_probs, torch.tensor([0, 1])) == [[], [vocab.encode("a")[0]]]


# ---------------------------------------------------------------- ONNX


@pytest.mark.filterwarnings("ignore:.*legacy TorchScript-based ONNX export:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning")
def test_onnx_export_matches_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = tiny("quartznet")
    path = tmp_path / "quartznet_tiny.onnx"
    torch.onnx.export(
        model,
        (torch.randn(2, 64, 80), torch.tensor([80, 51])),
        str(path),
        dynamo=False,  # the TorchScript exporter: onnxscript (needed by dynamo=True) is not in the stack
        opset_version=17,
        input_names=["features", "feature_lens"],
        output_names=["log_probs", "log_prob_lens"],
        dynamic_axes={
            "features": {0: "B", 2: "T"},
            "feature_lens": {0: "B"},
            "log_probs": {0: "B", 1: "T_out"},
            "log_prob_lens": {0: "B"},
        },
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    torch.manual_seed(5)
    for batch, x_lens in [(3, [123, 7, 60]), (1, [33])]:  # other batch sizes and lengths than the trace
        x_lens_t = torch.tensor(x_lens)
        x = torch.randn(batch, 64, max(x_lens))
        got, got_lens = session.run(None, {"features": x.numpy(), "feature_lens": x_lens_t.numpy()})
        with torch.no_grad():
            want, want_lens = model(x, x_lens_t)
        np.testing.assert_array_equal(got_lens, want_lens.numpy())
        np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("family, preset", TINY)
def test_export_layout_gives_the_same_outputs(family, preset):
    """The (B, C, 1, T) layout ONNX export uses (asr_core/models/conv.py) equals the 1-D path on a
    padded batch, and the exported graph holds 2-D convolutions only."""
    model = tiny(family)
    torch.manual_seed(3)
    x, x_lens = torch.randn(3, 64, 90), torch.tensor([90, 61, 12])
    with torch.no_grad():
        want, want_lens = model(x, x_lens)
        model.encoder.export_layout = True
        try:
            got, got_lens = model(x, x_lens)
            model.train()
            with pytest.raises(RuntimeError, match="eval mode"):
                model(x, x_lens)
        finally:
            model.encoder.export_layout = False
            model.eval()
    assert got_lens.tolist() == want_lens.tolist()
    for b, n in enumerate(want_lens.tolist()):
        torch.testing.assert_close(got[b, :n], want[b, :n], atol=1e-5, rtol=0)


def test_exported_convolutions_are_two_dimensional(tmp_path):
    onnx = pytest.importorskip("onnx")
    from asr_core.export.to_onnx import export_onnx

    path = export_onnx(tiny("quartznet"), tmp_path / "m.onnx", in_features=64)
    convs = [n for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"]
    assert convs and all(len(next(a.ints for a in n.attribute if a.name == "kernel_shape")) == 2 for n in convs)


# ---------------------------------------------------------------- NeMo / DLE key mapping


def test_nemo_key_mapping_round_trips():
    sd = meta_model("quartznet", "15x5").state_dict()
    nemo = dle_to_nemo_keys(sd)
    for key in [
        "encoder.encoder.0.mconv.0.conv.weight",  # depthwise (NeMo wraps the conv)
        "encoder.encoder.0.mconv.1.conv.weight",  # pointwise
        "encoder.encoder.0.mconv.2.weight",  # BatchNorm: no infix
        "encoder.encoder.0.mconv.2.running_mean",
        "encoder.encoder.1.res.0.0.conv.weight",
        "encoder.encoder.1.res.0.1.bias",
        "decoder.decoder_layers.0.weight",  # NeMo's decoder conv is a plain nn.Conv1d
        "decoder.decoder_layers.0.bias",
    ]:
        assert key in nemo, key
    assert len(nemo) == len(sd)
    back = nemo_to_dle_keys(
        {
            **nemo,
            "preprocessor.featurizer.fb": torch.zeros(1),
            "preprocessor.featurizer.window": torch.zeros(1),
        }
    )
    assert list(back) == list(sd)
    assert all(back[k] is sd[k] for k in sd)


def test_nemo_state_dict_loads_into_model():
    source, target = tiny("quartznet", seed=6), tiny("quartznet", seed=7)
    nemo = dle_to_nemo_keys(source.state_dict())
    nemo["preprocessor.featurizer.fb"] = torch.zeros(1, 257, 64)
    target.load_state_dict(nemo_to_dle_keys(nemo), strict=True)
    x, x_lens = torch.randn(2, 64, 40), torch.tensor([40, 25])
    with torch.no_grad():
        torch.testing.assert_close(target(x, x_lens)[0], source(x, x_lens)[0])


def test_dle_jasper_key_rename_round_trips():
    sd = meta_model("jasper", "tiny").state_dict()
    dle = model_to_dle_jasper_keys(sd)
    assert "encoder.layers.1.conv.0.weight" in dle and "encoder.layers.1.res.0.0.weight" in dle
    assert list(dle_jasper_to_model_keys(dle)) == list(sd)


# ---------------------------------------------------------------- configs and registry


@pytest.mark.parametrize("family, preset", [("quartznet", "15x5"), ("quartznet", "tiny"), ("jasper", "10x5")])
def test_config_dict_round_trip(family, preset):
    cfg = model_config(family, preset)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert type(cfg).from_dict(d) == cfg
    with pytest.raises(ValueError, match="kernal"):
        type(cfg).from_dict({**d, "kernal": 3})


def test_build_model_overrides_and_errors():
    model = build_model("quartznet", "tiny", V, dropout=0.2)
    assert {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} == {0.2}
    assert model_config("quartznet", "5x5") == QuartzNetConfig(block_repeats=1)
    assert model_config("jasper", "10x5") == JasperConfig()
    with pytest.raises(ValueError, match="unknown model family"):
        build_model("zipformer", "tiny", V)
    with pytest.raises(ValueError, match="unknown quartznet preset"):
        build_model("quartznet", "20x5", V)
    with pytest.raises(ValueError, match="blocks"):
        build_model("quartznet", "tiny", V, blocks=3)
    with pytest.raises(ValueError, match="differ in length"):
        build_model("quartznet", "tiny", V, block_kernels=(33, 39))
    with pytest.raises(TypeError):
        build_model_from_config("jasper", QuartzNetConfig(), V)
    rebuilt = build_model_from_config("quartznet", model_config("quartznet", "tiny").to_dict(), V)
    assert n_params(rebuilt) == n_params(model)
