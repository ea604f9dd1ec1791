"""The pruned transducer loss: the simple lattice, node occupancy, window chaining, and the loss
against the full one (equal with a full window, an upper bound otherwise), in a model step."""

import pytest
import torch

from asr_core.models import build_model
from asr_core.models.rnnt.loss import lattice_nll, lattice_rnnt_loss
from asr_core.models.rnnt.pruned_loss import node_occupancy, prune_ranges, pruned_nll, simple_lattice


@pytest.fixture
def batch():
    torch.manual_seed(0)
    b, t, u, v = 3, 12, 5, 7
    y = torch.randint(1, v, (b, u))
    return y, torch.tensor([12, 9, 7]), torch.tensor([5, 3, 4]), v


def test_simple_lattice_is_the_full_loss_of_the_additive_joint(batch):
    y, f_lens, y_lens, v = batch
    am, lm = torch.randn(3, 12, v) * 3, torch.randn(3, 6, v) * 3
    blank_lp, y_lp = simple_lattice(am, lm, y)
    want = lattice_rnnt_loss(am[:, :, None] + lm[:, None], f_lens, y, y_lens)
    torch.testing.assert_close(lattice_nll(blank_lp, y_lp, f_lens, y_lens), want)


def test_node_occupancy_counts_every_arc_of_every_path(batch):
    y, f_lens, y_lens, v = batch
    blank_lp, y_lp = simple_lattice(torch.randn(3, 12, v), torch.randn(3, 6, v), y)
    with torch.no_grad():  # works without a graph (evaluation)
        occ = node_occupancy(blank_lp, y_lp, f_lens, y_lens)
    assert (occ >= -1e-9).all()
    for i in range(3):  # a path takes T blanks and U tokens, each leaving one node
        assert float(occ[i, : f_lens[i]].sum()) == pytest.approx(int(f_lens[i] + y_lens[i]))
        assert float(occ[i, : f_lens[i], : y_lens[i] + 1].sum()) == pytest.approx(int(f_lens[i] + y_lens[i]))


@pytest.mark.parametrize("s", [2, 3, 4, 6])
def test_prune_ranges_chain_from_the_start_to_the_end(batch, s):
    y, f_lens, y_lens, v = batch
    occ = torch.rand(3, 12, 6)  # any occupancy: the windows must still chain
    starts = prune_ranges(occ, f_lens, y_lens, s)
    assert starts.shape == (3, 12) and (starts[:, 0] == 0).all()
    assert (starts[:, 1:] >= starts[:, :-1]).all() and (starts[:, 1:] - starts[:, :-1] <= s - 1).all()
    for i in range(3):
        hi = max(int(y_lens[i]) + 1 - s, 0)
        assert (starts[i] <= hi).all() and int(starts[i, f_lens[i] - 1]) == hi  # the last window holds U


def test_an_utterance_with_more_tokens_than_its_windows_can_pass_has_no_pruned_loss():
    # 2 frames, 5 tokens, windows of 2: at most 1 token per frame fits, so no path exists
    y, f_lens, y_lens = torch.randint(1, 7, (2, 5)), torch.tensor([2, 8]), torch.tensor([5, 5])
    starts = prune_ranges(torch.rand(2, 8, 6), f_lens, y_lens, 2)
    assert int(starts[0, 0]) > 0 and int(starts[1, 0]) == 0
    idx = (starts[..., None] + torch.arange(2))[..., None].expand(-1, -1, -1, 7)
    loss = pruned_nll(torch.randn(2, 8, 6, 7).gather(2, idx), starts, f_lens, y, y_lens)
    assert float(loss[0]) == 0.0 and 0 < float(loss[1]) < 1e3


def test_pruned_loss_equals_the_full_loss_with_a_full_window_and_bounds_it_otherwise(batch):
    y, f_lens, y_lens, v = batch
    logits = torch.randn(3, 12, 6, v)
    full = lattice_rnnt_loss(logits, f_lens, y, y_lens)
    torch.testing.assert_close(pruned_nll(logits, torch.zeros(3, 12, dtype=torch.long), f_lens, y, y_lens), full)
    occ = torch.rand(3, 12, 6)
    for s in (2, 3, 4):
        starts = prune_ranges(occ, f_lens, y_lens, s)
        idx = (starts[..., None] + torch.arange(s))[..., None].expand(-1, -1, -1, v)
        pruned = pruned_nll(logits.gather(2, idx), starts, f_lens, y, y_lens)
        assert (pruned >= full - 1e-4).all() and torch.isfinite(pruned).all()


def test_pruned_loss_follows_the_full_loss_where_the_windows_hold_the_probability(batch):
    # A joint whose mass sits on one alignment: windows from the full lattice's own occupancy keep
    # almost all of it, and the pruned loss is the full one to a small fraction of a nat.
    y, f_lens, y_lens, v = batch
    logits = torch.randn(3, 12, 6, v)
    for i in range(3):
        t_b, u_b = int(f_lens[i]), int(y_lens[i])
        for t in range(t_b):
            u_at = min(u_b, t * u_b // max(t_b - 1, 1))
            for u in range(6):
                if u < u_at:
                    logits[i, t, u, int(y[i, u])] += 12.0
                else:
                    logits[i, t, u, 0] += 12.0
    lse = logits.logsumexp(-1)
    blank_lp = logits[..., 0] - lse
    y_lp = logits[:, :, :-1].gather(3, y[:, None, :, None].expand(-1, 12, -1, 1)).squeeze(3) - lse[:, :, :-1]
    starts = prune_ranges(node_occupancy(blank_lp, y_lp, f_lens, y_lens), f_lens, y_lens, 3)
    idx = (starts[..., None] + torch.arange(3))[..., None].expand(-1, -1, -1, v)
    pruned = pruned_nll(logits.gather(2, idx), starts, f_lens, y, y_lens)
    torch.testing.assert_close(pruned, lattice_rnnt_loss(logits, f_lens, y, y_lens), atol=0.05, rtol=0.01)


def test_pruned_transducer_trains_a_step_and_reports_bad_config():
    torch.manual_seed(0)
    m = build_model("rnnt", "tiny", 32, head_config={"prune_range": 3})
    assert m.simple_am is not None and m.simple_lm is not None and m.prune_range == 3
    x, x_lens = torch.randn(2, 80, 120), torch.tensor([120, 90])
    y, y_lens = torch.randint(1, 32, (2, 6)), torch.tensor([6, 4])
    loss = m(x, x_lens, y, y_lens)
    loss.backward()
    assert torch.isfinite(loss)
    for name in ("joint.fc2.weight", "simple_am.weight", "simple_lm.weight", "encoder.proj.weight"):
        grad = dict(m.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    with torch.no_grad():  # evaluation: no graph, same value
        assert float(m(x, x_lens, y, y_lens)) == pytest.approx(float(loss), rel=1e-5)
    per_utt = m(x, x_lens, y, y_lens, reduction="none")
    assert per_utt.shape == (2,)
    for bad in (-1, 1):
        with pytest.raises(ValueError, match="prune_range"):
            build_model("rnnt", "tiny", 32, head_config={"prune_range": bad})
