"""wav2vec 2.0 pre-training pieces: span masks, negatives, quantiser, and the batch-independent loss."""

from __future__ import annotations

import torch

from asr_core.models.wav2vec2 import (
    GumbelVectorQuantizer,
    pretraining_loss,
    utterance_generators,
    wav2vec2_pretraining_model,
    wav2vec2_tiny,
)
from asr_core.models.wav2vec2.masking import batch_span_masks, sample_negatives, span_mask

NO_DROPOUT = dict(dropout=0.0, attention_dropout=0.0, dropout_input=0.0, dropout_features=0.0, layerdrop=0.0)


def test_span_mask_covers_about_mask_prob_and_stays_inside():
    g = torch.Generator().manual_seed(0)
    fracs = [float(span_mask(500, 0.65, 10, min_masks=2, generator=g).float().mean()) for _ in range(20)]
    # 32-33 spans of 10 over 500 frames, overlapping: ~48% of the frames on average (fairseq's figure)
    assert 0.40 < sum(fracs) / len(fracs) < 0.56
    m = batch_span_masks(
        torch.tensor([50, 20, 0]), 60, 0.65, 10, min_masks=2, generators=utterance_generators([1, 2, 3], "cpu")
    )
    assert not m[0, 50:].any() and not m[1, 20:].any() and not m[2].any() and m[1, :20].any()
    assert span_mask(3, 0.65, 10, min_masks=2).sum() >= 1  # short utterance: spans shortened


def test_negatives_come_from_the_same_utterance_and_never_the_target():
    counts = [5, 2, 30]
    neg = sample_negatives(counts, 50, utterance_generators([0, 1, 2], "cpu"))
    assert neg.shape == (37, 50)
    rows = torch.arange(37)[:, None]
    assert not (neg == rows).any()
    assert ((neg >= 0) & (neg < 5))[:5].all() and ((neg >= 5) & (neg < 7))[5:7].all() and (neg[7:] >= 7).all()


def test_quantizer_temperature_annealing_and_straight_through():
    q = GumbelVectorQuantizer(16, num_vars=8, groups=2, vq_dim=12, temp=(2.0, 0.5, 0.9))
    q.set_num_updates(0)
    assert q.curr_temp == 2.0
    q.set_num_updates(5)
    assert abs(q.curr_temp - 2.0 * 0.9**5) < 1e-12
    q.set_num_updates(10**6)
    assert q.curr_temp == 0.5
    x = torch.randn(7, 16, requires_grad=True)
    out = q.train()(x)
    assert out["x"].shape == (7, 12) and 1 <= float(out["code_perplexity"]) <= 16
    out["x"].sum().backward()
    assert x.grad is not None and q.weight_proj.weight.grad.abs().sum() > 0
    ev = q.eval()(x)["x"]  # eval: hard argmax, each half of the vector is one codebook entry
    idx = q.weight_proj(x).view(7, 2, 8).argmax(-1)
    assert torch.equal(ev[:, :6], q.vars[0, idx[:, 0]]) and torch.equal(ev[:, 6:], q.vars[0, 8 + idx[:, 1]])


def test_loss_is_batch_independent_with_fixed_draws():
    """An utterance's contrastive and feature-penalty terms alone == in a padded batch (fixed seeds)."""
    torch.manual_seed(0)
    model = wav2vec2_pretraining_model(wav2vec2_tiny(**NO_DROPOUT)).train()
    lens = torch.tensor([12000, 16000, 7000])
    waves = torch.randn(3, 16000) * (torch.arange(16000)[None] < lens[:, None])
    seeds = [11, 22, 33]
    batch = model(waves, lens, utterance_generators(seeds, "cpu"))
    assert (batch["num_targets"] > 0).all()
    for i in range(3):
        alone = model(waves[i : i + 1, : lens[i]], lens[i : i + 1], utterance_generators(seeds[i : i + 1], "cpu"))
        assert alone["num_targets"].item() == batch["num_targets"][i].item()
        torch.testing.assert_close(alone["contrastive"][0], batch["contrastive"][i], atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(alone["feature_pen"][0], batch["feature_pen"][i], atol=1e-6, rtol=1e-5)
    # other seeds: other draws, another loss
    other = model(waves, lens, utterance_generators([1, 2, 3], "cpu"))
    assert not torch.allclose(other["contrastive"], batch["contrastive"])


def test_pretraining_loss_combines_the_terms_and_trains_every_module():
    torch.manual_seed(0)
    model = wav2vec2_pretraining_model(wav2vec2_tiny(**NO_DROPOUT)).train()
    terms = model(torch.randn(2, 9600), torch.tensor([9600, 8000]), utterance_generators([5, 6], "cpu"))
    loss, n = pretraining_loss(terms)
    assert n == int(terms["num_targets"].sum()) > 0
    pen = (terms["feature_pen"] * terms["num_frames"]).sum() / terms["num_frames"].sum()
    expected = terms["contrastive"].sum() / n + 0.1 * terms["diversity"] + 10 * pen
    torch.testing.assert_close(loss, expected)
    assert 0 <= float(terms["diversity"].detach()) < 1
    loss.backward()
    for name in (
        "encoder.mask_emb",
        "quantizer.vars",
        "quantizer.weight_proj.weight",
        "project_q.weight",
        "final_proj.weight",
        "encoder.feature_extractor.conv_layers.0.conv.weight",
        "encoder.transformer.layers.3.fc2.weight",
    ):
        p = dict(model.named_parameters())[name]
        assert p.grad is not None and p.grad.abs().sum() > 0, name
