"""The contract every registered model keeps: each encoder family's ``tiny`` preset under each head.

Builds, trains two steps, gives the same outputs for an utterance alone and inside a padded
batch (eval mode), exports with its objective's graphs to onnxruntime within the fp32 gate,
and decodes greedily to the same tokens there as in PyTorch. A family added to
``asr_core.models.FAMILIES`` is tested here, as CTC and as transducer, without a line of its own
(waveform encoders take the CTC head only: the transducer recipe refuses them).
"""

from __future__ import annotations

import pytest
import torch

from asr_core.models import FAMILIES, KINDS, build_model, ctc_loss, greedy_decode, model_config

V = 12  # outputs, blank included
LENS = (40, 27)  # frames (or samples / 160 for a waveform model) of a padded batch of two


def _inputs(family: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch of two utterances of different lengths in what the family's front end gives."""
    g = torch.Generator().manual_seed(0)
    if FAMILIES[family].frontend == "waveform":
        lens = torch.tensor([n * 160 for n in LENS])
        x = torch.randn(2, int(lens.max()), generator=g)
    else:
        lens = torch.tensor(LENS)
        x = torch.randn(2, model_config(family, "tiny").in_features, int(lens.max()), generator=g)
    mask = torch.arange(x.size(-1))[None, :] < lens[:, None]
    return x * (mask[:, None, :] if x.ndim == 3 else mask), lens


def _targets() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([[1, 2, 3], [4, 5, 0]]), torch.tensor([3, 2])


def _outputs(model, x, lens) -> tuple[torch.Tensor, torch.Tensor]:
    """What the objective decodes from: CTC log-probs, or the transducer's encoder frames."""
    return model(x, lens) if model.kind == "ctc" else model.encoder(x, lens)


CONFIGS = [
    (family, kind)
    for family in sorted(FAMILIES)
    for kind in KINDS
    if kind == "ctc" or FAMILIES[family].frontend != "waveform"
]


@pytest.fixture(params=CONFIGS, ids=[f"{f}-{k}" for f, k in CONFIGS])
def config(request) -> tuple[str, str]:
    assert "tiny" in FAMILIES[request.param[0]].presets, f"{request.param[0]}: every family has a 'tiny' preset"
    return request.param


def _model(config: tuple[str, str]):
    torch.manual_seed(0)
    family, kind = config
    model = build_model(family, "tiny", V, kind=kind)
    assert model.kind == kind, config
    return model


def test_builds_and_trains_two_steps(config):
    family = config[0]
    model = _model(config).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, lens = _inputs(family)
    y, y_lens = _targets()
    for _ in range(2):
        if model.kind == "ctc":
            log_probs, out_lens = model(x, lens)
            loss = ctc_loss(log_probs, out_lens, y, y_lens, blank=model.blank)
        else:
            loss = model(x, lens, y, y_lens)
        assert torch.isfinite(loss), (family, loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    changed = [k for k, v in model.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])]
    assert changed, f"{family}: two steps changed no weight"


def test_batch_equals_single_on_padded_input(config):
    family = config[0]
    model = _model(config).eval()
    x, lens = _inputs(family)
    with torch.no_grad():
        out, out_lens = _outputs(model, x, lens)
        for i in range(2):
            n = int(lens[i])
            alone, alone_lens = _outputs(model, x[i : i + 1, ..., :n], lens[i : i + 1])
            assert int(alone_lens[0]) == int(out_lens[i]), family
            m = int(out_lens[i])
            torch.testing.assert_close(out[i, :m], alone[0, :m], atol=1e-4, rtol=1e-4, msg=family)


def test_export_parity_and_greedy_decode(config, tmp_path):
    pytest.importorskip("onnxruntime")
    family = config[0]
    model = _model(config).eval()
    x, lens = _inputs(family)
    if model.kind == "ctc":
        from asr_core.export import export_onnx, make_runner

        in_features = None if FAMILIES[family].frontend == "waveform" else x.size(1)
        export_onnx(model, tmp_path / "model.onnx", in_features=in_features)
        with torch.no_grad():
            ref, ref_lens = model(x, lens)
        got, got_lens = make_runner("onnxruntime_fp32", export_dir=tmp_path, threads=1)(x, lens)
        assert torch.equal(ref_lens, got_lens.cpu()), family
        for i, n in enumerate(ref_lens.tolist()):
            assert float((ref[i, :n] - got[i, :n].float()).abs().max()) <= 1e-3, family
        assert greedy_decode(ref, ref_lens, model.blank) == greedy_decode(got.float(), got_lens, model.blank)
    else:
        from asr_core.decoding.rnnt_stream import TorchBackend, offline_greedy
        from asr_core.export.rnnt_onnx import export_rnnt
        from asr_core.export.rnnt_runtime import load_backend, write_meta

        export_rnnt(model, tmp_path, feature_dim=x.size(1), openvino=False)
        write_meta(model, tmp_path)
        torch_be, onnx_be = TorchBackend(model), load_backend(tmp_path, "onnxruntime", threads=1)
        assert not model.training, "exporting leaves the model in eval mode"
        ref, got = torch_be.encode_utterances(x, lens), onnx_be.encode_utterances(x, lens)
        assert torch.equal(ref[1], got[1]), family
        for i, n in enumerate(ref[1].tolist()):
            assert float((ref[0][i, :n] - got[0][i, :n]).abs().max()) <= 1e-3, family
        assert offline_greedy(onnx_be, x, lens) == offline_greedy(torch_be, x, lens), family
