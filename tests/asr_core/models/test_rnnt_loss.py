"""The CPU transducer loss against torchaudio's kernel: the same function, values and gradients."""

from __future__ import annotations

import pytest
import torch
import torchaudio

from asr_core.models.rnnt.loss import lattice_rnnt_loss, rnnt_loss


def _case(seed: int = 0, b: int = 6, t: int = 23, u: int = 9, v: int = 17):
    g = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(b, t, u + 1, v, generator=g)).requires_grad_()
    targets = torch.randint(1, v, (b, u), generator=g)
    # ragged: full, short in time, short in tokens, no tokens at all, one frame, both short
    logit_lens = torch.tensor([t, t - 7, t, t, 1, 11])[:b]
    target_lens = torch.tensor([u, u, 3, 0, 1, 5])[:b]
    return logits, targets, logit_lens, target_lens


def _torchaudio(logits, targets, logit_lens, target_lens, blank=0, reduction="none"):
    return torchaudio.functional.rnnt_loss(
        logits, targets.int(), logit_lens.int(), target_lens.int(), blank=blank, reduction=reduction
    )


@pytest.mark.parametrize("blank", [0, 4])
def test_lattice_loss_equals_torchaudio_values_and_gradients(blank):
    logits, targets, logit_lens, target_lens = _case()
    targets[targets == blank] = 1 if blank != 1 else 2
    ref = _torchaudio(logits, targets, logit_lens, target_lens, blank)
    (g_ref,) = torch.autograd.grad(ref.sum(), logits)
    got = lattice_rnnt_loss(logits, logit_lens, targets, target_lens, blank)
    (g_got,) = torch.autograd.grad(got.sum(), logits)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(g_got, g_ref, rtol=1e-4, atol=1e-5)


def test_lattice_loss_survives_long_targets_and_confident_logits():
    """C (a sum of up to U log-probabilities) grows large: float64 forward variables keep it exact."""
    logits, targets, logit_lens, target_lens = _case(seed=1, b=2, t=150, u=120, v=8)
    with torch.no_grad():
        logits.mul_(10)
    ref = _torchaudio(logits, targets, torch.tensor([150, 140]), torch.tensor([120, 100]))
    got = lattice_rnnt_loss(logits, torch.tensor([150, 140]), targets, torch.tensor([120, 100]))
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-2)


def test_rnnt_loss_reductions_and_checks():
    logits, targets, logit_lens, target_lens = _case()
    per = rnnt_loss(logits, logit_lens, targets, target_lens, reduction="none")
    assert per.shape == (6,)
    torch.testing.assert_close(rnnt_loss(logits, logit_lens, targets, target_lens), per.mean())
    torch.testing.assert_close(rnnt_loss(logits, logit_lens, targets, target_lens, reduction="sum"), per.sum())
    with pytest.raises(ValueError, match="reduction"):
        rnnt_loss(logits, logit_lens, targets, target_lens, reduction="max")
