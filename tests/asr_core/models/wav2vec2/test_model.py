"""wav2vec 2.0 network: parameter counts, shapes, Hourglass, batch independence of inference."""

from __future__ import annotations

import pytest
import torch

from asr_core.models import build_model, model_config
from asr_core.models.wav2vec2 import (
    HOURGLASS_DEFAULT,
    WaveformConfig,
    WaveformFeatures,
    parse_hourglass,
    wav2vec2_base,
    wav2vec2_ctc_model,
    wav2vec2_large,
    wav2vec2_pretraining_model,
    wav2vec2_tiny,
)
from asr_core.models.wav2vec2.transformer import shorten, upsample

NO_DROPOUT = dict(dropout=0.0, attention_dropout=0.0, dropout_input=0.0, dropout_features=0.0, layerdrop=0.0)


def _count(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("preset, expected", [(wav2vec2_base, 95.0e6), (wav2vec2_large, 317e6)])
@pytest.mark.parametrize("hourglass", [None, HOURGLASS_DEFAULT])
def test_parameter_counts_match_the_reference(preset, expected, hourglass):
    num_layers = preset().num_layers
    plan = hourglass if num_layers == 12 else "[4, (16, 4), 4]"
    with torch.device("meta"):  # no memory, no init time
        model = wav2vec2_pretraining_model(preset(hourglass=plan if hourglass else None))
    n = _count(model)
    assert abs(n - expected) / expected < 0.005, n


def test_base_layout():
    cfg = wav2vec2_base()
    assert (cfg.embed_dim, cfg.num_layers, cfg.ffn_dim, cfg.num_heads) == (768, 12, 3072, 12)
    assert cfg.subsampling == 320 and cfg.latent_groups * cfg.latent_vars == 640 and cfg.final_dim == 256
    large = wav2vec2_large()
    assert (large.embed_dim, large.num_layers, large.ffn_dim, large.num_heads) == (1024, 24, 4096, 16)


def test_registry_builds_a_ctc_model_on_waveforms():
    model = build_model("wav2vec2", "tiny", 29, **NO_DROPOUT).eval()
    x = torch.randn(2, 8000)
    lp, lens = model(x, torch.tensor([8000, 6400]))
    assert lp.shape == (2, 24, 29) and lens.tolist() == [24, 19]
    assert model.encoder.output_lengths(torch.tensor([8000, 6400])).tolist() == [24, 19]
    assert torch.allclose(lp.exp().sum(-1), torch.ones(2, 24))
    assert model_config("wav2vec2", "tiny").embed_dim == 96


def test_hourglass_plan_parsing():
    assert parse_hourglass(HOURGLASS_DEFAULT, 12) == [(2, 1), (8, 4), (2, 1)]
    assert parse_hourglass(None, 12) == [(12, 1)]
    with pytest.raises(ValueError, match="has 11 layers"):
        parse_hourglass("[2, (8, 4), 1]", 12)
    with pytest.raises(ValueError, match="cannot parse"):
        parse_hourglass("[2, (8, 4", 12)
    with pytest.raises(ValueError, match="neither"):
        wav2vec2_tiny(hourglass="[1, 'x', 1]")


def test_shorten_averages_valid_frames_and_upsample_repeats():
    x = torch.arange(10.0).view(1, 10, 1).repeat(2, 1, 1)
    xs, ls = shorten(x, torch.tensor([10, 5]), 4)
    assert ls.tolist() == [3, 2]
    assert xs[0, :, 0].tolist() == [1.5, 5.5, 8.5]
    assert xs[1, :2, 0].tolist() == [1.5, 4.0]  # frame 4 alone: padding is not averaged in
    assert upsample(xs, 4, 10)[0, :, 0].tolist() == [1.5] * 4 + [5.5] * 4 + [8.5] * 2


@pytest.mark.parametrize("hourglass", [None, "[1, (2, 3), 1]"])
def test_inference_is_batch_independent(hourglass):
    """A sample alone gives the same log-probs as in a padded batch of other lengths."""
    torch.manual_seed(0)
    cfg = wav2vec2_tiny(hourglass=hourglass, **NO_DROPOUT)
    model = wav2vec2_ctc_model(cfg, 29).eval()
    feats = WaveformFeatures(WaveformConfig(normalize=True))
    lens = torch.tensor([9000, 16000, 4321])
    waves = torch.randn(3, 16000) * (torch.arange(16000)[None] < lens[:, None])
    with torch.no_grad():
        xb, lb = feats(waves + 5.0 * (torch.arange(16000)[None] >= lens[:, None]), lens)  # junk in the padding
        batch_lp, batch_lens = model(xb, lb)
        for i in range(3):
            xi, li = feats(waves[i : i + 1, : lens[i]], lens[i : i + 1])
            lp, n = model(xi, li)
            assert n.item() == batch_lens[i].item()
            torch.testing.assert_close(lp[0], batch_lp[i, : n.item()], atol=1e-5, rtol=1e-5)


def test_waveform_features_normalise_per_utterance_and_zero_padding():
    f = WaveformFeatures(WaveformConfig(normalize=True))
    x = torch.randn(2, 100) * 3 + 1
    y, lens = f(x, torch.tensor([100, 60]))
    assert abs(float(y[1, :60].mean())) < 1e-5 and abs(float(y[1, :60].std(unbiased=False)) - 1) < 1e-3
    assert y[1, 60:].abs().sum() == 0 and lens.tolist() == [100, 60]
    assert WaveformConfig.from_dict({"normalize": False}).module().cfg.normalize is False
    with pytest.raises(ValueError, match="unknown WaveformConfig keys"):
        WaveformConfig.from_dict({"n_mels": 64})


def test_training_masks_and_frozen_feature_encoder():
    torch.manual_seed(0)
    cfg = wav2vec2_tiny(mask_prob=0.5, mask_channel_prob=0.2, mask_channel_length=8, layerdrop=0.5)
    model = wav2vec2_ctc_model(cfg, 29)
    model.encoder.freeze_feature_encoder_()
    lp, _ = model(torch.randn(2, 8000), torch.tensor([8000, 8000]))
    lp.sum().backward()
    assert all(p.grad is None for p in model.encoder.feature_extractor.parameters())
    assert model.encoder.post_extract_proj.weight.grad is not None
    with torch.no_grad():  # eval: no masking, deterministic
        model.eval()
        a, _ = model(torch.ones(1, 8000), torch.tensor([8000]))
        b, _ = model(torch.ones(1, 8000), torch.tensor([8000]))
    assert torch.equal(a, b)
