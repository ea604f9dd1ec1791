"""Optimizers, schedules and EMA: formulas by hand, DLE semantics, exact resume."""

import io
import math

import pytest
import torch
from torch import nn

from asr_core.train import (
    EMA,
    Novograd,
    PlateauSchedule,
    ScheduleConfig,
    build_optimizer,
    build_schedule,
)

# --------------------------------------------------------------------------- Novograd


def _novograd_by_hand(p, grads, lr, beta1, beta2, wd, eps=1e-8, grad_averaging=False):
    """The DLE/NeMo update written out on Python floats, one list per tensor."""
    m, v = [0.0] * len(p), 0.0
    p = list(p)
    for g in grads:
        n = sum(x * x for x in g)
        v = n if v == 0 else beta2 * v + (1 - beta2) * n
        u = [gi / (math.sqrt(v) + eps) + wd * pi for gi, pi in zip(g, p)]
        if grad_averaging:
            u = [(1 - beta1) * ui for ui in u]
        m = [beta1 * mi + ui for mi, ui in zip(m, u)]
        p = [pi - lr * mi for pi, mi in zip(p, m)]
    return p, v


@pytest.mark.parametrize("betas, wd, grad_averaging", [((0.95, 0.0), 1e-3, False), ((0.9, 0.5), 0.1, True)])
def test_novograd_matches_hand_formula(betas, wd, grad_averaging):
    p0 = [1.0, -2.0, 0.5, 3.0]
    grads = [[0.3, -0.1, 0.2, 0.4], [-0.2, 0.5, 0.1, 0.0], [0.05, 0.05, -0.3, 0.2]]
    p = nn.Parameter(torch.tensor(p0, dtype=torch.float64))
    opt = Novograd([p], lr=0.1, betas=betas, weight_decay=wd, grad_averaging=grad_averaging)
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    want_p, want_v = _novograd_by_hand(p0, grads, 0.1, *betas, wd, grad_averaging=grad_averaging)
    torch.testing.assert_close(p.detach(), torch.tensor(want_p, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    assert opt.state[p]["exp_avg_sq"].item() == pytest.approx(want_v, rel=1e-12)
    assert opt.state[p]["exp_avg_sq"].dim() == 0 and opt.state[p]["step"] == 3


def test_novograd_first_step_by_hand():
    # g = (3, 4): |g|^2 = 25, so the normalised gradient is (0.6, 0.8).
    p = nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    opt = Novograd([p], lr=0.5, betas=(0.95, 0.0), eps=0.0, weight_decay=0.1)
    p.grad = torch.tensor([3.0, 4.0], dtype=torch.float64)
    opt.step()
    # u = (0.6 + 0.1*1, 0.8 + 0.1*2) = (0.7, 1.0); m = u; p -= 0.5 * m
    torch.testing.assert_close(p.detach(), torch.tensor([0.65, 1.5], dtype=torch.float64))
    assert opt.state[p]["exp_avg_sq"].item() == 25.0
    torch.testing.assert_close(p.grad, torch.tensor([3.0, 4.0], dtype=torch.float64))  # grad left alone


def test_novograd_layerwise_second_moment_and_zero_grad_reinit():
    a = nn.Parameter(torch.zeros(3))
    b = nn.Parameter(torch.zeros(2, 2))
    opt = Novograd([a, b], lr=0.1, betas=(0.95, 0.98))
    a.grad, b.grad = torch.zeros(3), torch.full((2, 2), 2.0)
    opt.step()
    assert opt.state[a]["exp_avg_sq"].item() == 0.0  # zero gradient keeps v at 0 ...
    assert opt.state[b]["exp_avg_sq"].item() == 16.0  # one scalar per tensor: |g|^2
    a.grad, b.grad = torch.tensor([1.0, 2.0, 2.0]), torch.zeros(2, 2)
    opt.step()
    assert opt.state[a]["exp_avg_sq"].item() == 9.0  # ... so the next gradient initialises it
    assert opt.state[b]["exp_avg_sq"].item() == pytest.approx(0.98 * 16.0)


def test_novograd_weight_decay_and_amsgrad():
    # Zero gradient: the step is pure decay, p *= (1 - lr * wd).
    p = nn.Parameter(torch.tensor([2.0, -4.0], dtype=torch.float64))
    opt = Novograd([p], lr=0.1, weight_decay=0.5)
    p.grad = torch.zeros(2, dtype=torch.float64)
    opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([1.9, -3.8], dtype=torch.float64))
    q = nn.Parameter(torch.tensor([2.0, -4.0]))
    opt = Novograd([q], lr=0.1, weight_decay=0.0)
    q.grad = torch.zeros(2)
    opt.step()
    assert torch.equal(q.detach(), torch.tensor([2.0, -4.0]))
    # AMSGrad normalises by the largest v seen.
    r = nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = Novograd([r], lr=1.0, betas=(0.0, 0.0), eps=0.0, amsgrad=True)
    for g in (4.0, 1.0):
        r.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
    assert opt.state[r]["max_exp_avg_sq"].item() == 16.0
    assert r.item() == pytest.approx(-(1.0 + 0.25))


def test_novograd_solves_least_squares():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(32, 6, generator=g)
    x_true = torch.randn(6, generator=g)
    b = A @ x_true
    x = nn.Parameter(torch.zeros(6))
    opt = Novograd([x], lr=0.01, betas=(0.95, 0.0))
    sched = build_schedule(ScheduleConfig("polynomial", warmup_steps=20), 0.01, total_steps=600)
    loss0 = ((A @ x - b) ** 2).mean().item()
    for step in range(600):
        sched.apply(opt, step)
        opt.zero_grad()
        loss = ((A @ x - b) ** 2).mean()
        loss.backward()
        opt.step()
    assert loss.item() < 1e-4 * loss0
    assert torch.allclose(x.detach(), x_true, atol=2e-2)


# --------------------------------------------------------------------------- build_optimizer


def _toy():
    return nn.Sequential(nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4), nn.Flatten(), nn.Linear(8, 3), nn.LayerNorm(3))


def test_build_optimizer_groups():
    m = _toy()
    opt = build_optimizer("novograd", m, lr=0.01, weight_decay=1e-3)
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["weight_decay"] == 1e-3  # DLE: decay all
    assert opt.param_groups[0]["betas"] == (0.95, 0.0)
    opt = build_optimizer(
        "adamw", nn.DataParallel(m), lr=1e-3, weight_decay=0.01, betas=(0.9, 0.98), eps=1e-6, exclude_norm_and_bias=True
    )
    decay, no_decay = opt.param_groups
    assert {id(p) for p in decay["params"]} == {id(m[0].weight), id(m[3].weight)}
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 6
    assert isinstance(opt, torch.optim.AdamW) and decay["betas"] == (0.9, 0.98) and decay["eps"] == 1e-6
    m[0].weight.requires_grad_(False)
    assert all(p is not m[0].weight for g in build_optimizer("adam", m, 1e-3).param_groups for p in g["params"])
    with pytest.raises(ValueError, match="needs the model"):
        build_optimizer("adam", m.parameters(), 1e-3, exclude_norm_and_bias=True)
    with pytest.raises(ValueError, match="'sgd'"):
        build_optimizer("sgd", m, 1e-3)


# --------------------------------------------------------------------------- schedules


def test_exponential_shape():
    cfg = ScheduleConfig("exponential", warmup_steps=4, hold_steps=6, exp_gamma=0.5, min_lr=0.01)
    s = build_schedule(cfg, base_lr=1.0, steps_per_epoch=5)
    assert s.lr_at(0) == pytest.approx(1 / 5)  # (s+1)/(W+1)
    assert s.lr_at(3) == pytest.approx(4 / 5)
    assert s.lr_at(4) == 1.0 and s.lr_at(9) == 1.0  # end of warm-up, hold
    assert s.lr_at(10) == 1.0  # first decay epoch starts one update later, as in DLE
    assert [s.lr_at(k) for k in (11, 15, 16, 20, 21)] == [0.5, 0.5, 0.25, 0.25, 0.125]
    assert s.lr_at(10_000) == 0.01  # floor
    smooth = build_schedule(
        ScheduleConfig("exponential", warmup_steps=4, hold_steps=6, exp_gamma=0.5, staircase=False),
        1.0,
        steps_per_epoch=5,
    )
    assert smooth.lr_at(12) == pytest.approx(0.5**0.4)


def test_exponential_matches_dle_training_loop():
    """DLE sets the lr after update `step` (1-based) in epoch `epoch`, for the next update."""
    spe, we, he, gamma, base, floor = 7, 2, 3, 0.981, 0.01, 1e-5

    def dle_policy(step, epoch):
        W, H = we * spe, he * spe
        if step < W:
            a = (step + 1) / (W + 1)
        elif step < W + H:
            a = 1.0
        else:
            a = gamma ** (epoch - we - he)
        return max(a * base, floor)

    s = build_schedule(
        ScheduleConfig("exponential", warmup_epochs=we, hold_epochs=he, exp_gamma=gamma), base, steps_per_epoch=spe
    )
    step = 1
    for epoch in range(1, 400):
        for _ in range(spe):
            assert s.lr_at(step) == dle_policy(step, epoch), (step, epoch)  # lr of update step+1
            step += 1
    assert s.lr_at(step) == floor


def test_legacy_polynomial_tri_stage_shapes():
    leg = build_schedule(ScheduleConfig("legacy", warmup_steps=2, hold_steps=2, min_lr=1e-3), 1.0, total_steps=14)
    assert leg.lr_at(0) == pytest.approx(1 / 3) and leg.lr_at(4) == 1.0
    assert leg.lr_at(9) == pytest.approx(0.25) and leg.lr_at(14) == 1e-3 and leg.lr_at(99) == 1e-3

    poly = build_schedule(ScheduleConfig("polynomial", warmup_steps=10), 1.0, total_steps=110)
    assert poly.lr_at(0) == 0.0  # fairseq: the first update has lr 0
    assert poly.lr_at(5) == 0.5 and poly.lr_at(10) == 1.0
    assert poly.lr_at(60) == pytest.approx(0.5) and poly.lr_at(110) == 0.0 and poly.lr_at(500) == 0.0
    poly2 = build_schedule(
        ScheduleConfig("polynomial", warmup_steps=10, hold_steps=10, power=2.0, final_lr_scale=0.1),
        1.0,
        total_steps=120,
    )
    assert poly2.lr_at(20) == 1.0 and poly2.lr_at(70) == pytest.approx(0.9 * 0.25 + 0.1)

    tri = build_schedule(ScheduleConfig("tri_stage", warmup_ratio=0.1, hold_ratio=0.4), 1.0, total_steps=100)
    assert tri.lr_at(0) == pytest.approx(0.01)  # init_lr_scale
    assert tri.lr_at(5) == pytest.approx(0.01 + 0.99 * 0.5)
    assert tri.lr_at(10) == 1.0 and tri.lr_at(49) == 1.0 and tri.lr_at(50) == 1.0
    assert tri.lr_at(75) == pytest.approx(math.sqrt(0.05))  # halfway through decay
    assert tri.lr_at(100) == pytest.approx(0.05) and tri.lr_at(1000) == pytest.approx(0.05)


def test_lambdalr_and_apply_agree():
    s = build_schedule(ScheduleConfig("tri_stage", warmup_steps=3, hold_steps=2), 0.1, total_steps=12)
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p]}, {"params": [nn.Parameter(torch.zeros(1))]}], lr=0.1)
    lam = torch.optim.lr_scheduler.LambdaLR(opt, s.lr_lambda)
    for step in range(15):
        assert opt.param_groups[0]["lr"] == pytest.approx(s.lr_at(step))
        opt.step()
        lam.step()
    assert s.apply(opt, 4) == 0.1 and all(g["lr"] == 0.1 for g in opt.param_groups)


def test_plateau_schedule():
    s = build_schedule(ScheduleConfig("plateau", warmup_steps=4), 1.0)
    assert isinstance(s, PlateauSchedule)
    assert s.lr_at(0) == 0.25 and s.lr_at(3) == 1.0 and s.lr_at(100) == 1.0  # min((s+1)/W, 1)
    assert [s.observe(v) for v in (3.0, 2.0, 2.0, 2.0)] == [False, False, False, True]  # patience 1
    assert s.lr_at(100) == 0.5 and s.lr_at(1) == 0.25
    saved = s.state_dict()
    other = build_schedule(ScheduleConfig("plateau", warmup_steps=4), 1.0)
    other.load_state_dict(saved)
    for t in (s, other):
        assert [t.observe(v) for v in (1.0, 1.0, 1.0)] == [False, False, True]
    assert other.lr_at(50) == s.lr_at(50) == 0.25
    tiny = build_schedule(ScheduleConfig("plateau", min_lr=0.3), 1.0)
    for _ in range(20):
        tiny.observe(1.0)
    assert tiny.lr_at(0) == 0.3  # floor
    with pytest.raises(ValueError, match="NaN"):
        tiny.observe(float("nan"))


def test_schedule_config_checks():
    cfg = ScheduleConfig("tri_stage", warmup_ratio=0.1, hold_ratio=0.4, final_lr_scale=0.05)
    assert ScheduleConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.options() == {"init_lr_scale": 0.01, "final_lr_scale": 0.05}
    with pytest.raises(ValueError, match="unknown schedule option"):
        ScheduleConfig.from_dict({"name": "exponential", "gama": 0.9})
    with pytest.raises(ValueError, match="does not use \\['exp_gamma'\\]"):
        ScheduleConfig("tri_stage", exp_gamma=0.9)
    with pytest.raises(ValueError, match="one way"):
        ScheduleConfig("exponential", warmup_steps=10, warmup_epochs=2)
    with pytest.raises(ValueError, match="cosine"):
        ScheduleConfig("cosine")
    with pytest.raises(ValueError, match="steps_per_epoch"):
        build_schedule(ScheduleConfig("exponential"), 0.01)
    with pytest.raises(ValueError, match="total_steps"):
        build_schedule(ScheduleConfig("polynomial", warmup_steps=100), 0.01, total_steps=50)
    a = build_schedule(ScheduleConfig("exponential", warmup_epochs=2), 0.01, steps_per_epoch=10)
    assert a.lr_at(20) == 0.01 and a.lr_at(19) < 0.01  # 2 epochs x 10 steps
    b = build_schedule(ScheduleConfig("exponential", warmup_epochs=2), 0.02, steps_per_epoch=10)
    with pytest.raises(ValueError, match="base_lr"):
        b.load_state_dict(a.state_dict())


# --------------------------------------------------------------------------- EMA


def _bn_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def test_ema_math_and_buffers():
    net = _bn_net()
    ema = EMA(net, decay=0.9)
    w0, rm0 = net[0].weight.detach().clone(), net[1].running_mean.clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
    net(torch.randn(8, 3))  # train mode: running stats and num_batches_tracked move
    ema.update(net)
    sh = ema.shadow
    torch.testing.assert_close(sh[0].weight, 0.9 * w0 + 0.1 * net[0].weight)
    torch.testing.assert_close(sh[1].running_mean, 0.9 * rm0 + 0.1 * net[1].running_mean)  # DLE: averaged
    assert sh[1].num_batches_tracked.item() == 1  # integers copied
    assert not sh[0].weight.requires_grad and ema.num_updates == 1

    copy_ema = EMA(net, decay=0.9, buffers="copy")
    net(torch.randn(8, 3))
    copy_ema.update(net)
    assert torch.equal(copy_ema.shadow[1].running_var, net[1].running_var)


def test_ema_swap_copy_and_export():
    net = _bn_net()
    ema = EMA(nn.DataParallel(net), decay=0.5)  # wrappers are unwrapped
    assert list(ema.state_dict()["shadow"])[0] == "0.weight"
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)
    ema.update(nn.DataParallel(net))
    live = {k: v.clone() for k, v in net.state_dict().items()}
    with ema.swapped(net) as m:
        assert m is net and torch.equal(net[3].bias, ema.shadow[3].bias)
        assert not torch.equal(net[3].bias, live["3.bias"])
    assert all(torch.equal(v, live[k]) for k, v in net.state_dict().items())
    exported = ema.ema_model()
    ema.copy_to(net)
    assert all(torch.equal(v, exported.state_dict()[k]) for k, v in net.state_dict().items())
    with pytest.raises(ValueError, match="does not match"):
        ema.update(nn.Linear(3, 4))


def test_ema_keeps_fp32_shadow_for_half_models():
    net = nn.Linear(4, 4).to(torch.bfloat16)
    ema = EMA(net, decay=0.999)
    assert ema.shadow.weight.dtype == torch.float32
    before = ema.shadow.weight.clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)
    moved = ema.shadow.weight - before
    assert torch.all(moved > 0)  # a 0.001 step survives in fp32; bf16 would round most of it away
    ema.copy_to(net)
    assert net.weight.dtype == torch.bfloat16


# --------------------------------------------------------------------------- exact resume


def _batch(step):
    g = torch.Generator().manual_seed(1000 + step)
    return torch.randn(16, 3, generator=g), torch.randint(0, 2, (16,), generator=g)


def _build(opt_name, sched_cfg, seed):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    opt = build_optimizer(opt_name, net, lr=0.01, weight_decay=1e-3)
    sched = build_schedule(sched_cfg, 0.01, total_steps=10, steps_per_epoch=3)
    return net, opt, sched, EMA(net, decay=0.9)


def _train(net, opt, sched, ema, start, end):
    for step in range(start, end):
        sched.apply(opt, step)
        x, y = _batch(step)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        ema.update(net)
        if isinstance(sched, PlateauSchedule):
            sched.observe([1.0, 0.9, 0.95, 0.97, 0.99, 0.8, 0.85, 0.9, 0.92, 0.93][step])


@pytest.mark.parametrize("opt_name", ["novograd", "adamw", "adam"])
@pytest.mark.parametrize(
    "sched_cfg",
    [
        ScheduleConfig("exponential", warmup_steps=2, hold_steps=2, exp_gamma=0.5),
        ScheduleConfig("plateau", warmup_steps=3),
    ],
    ids=["exponential", "plateau"],
)
def test_exact_resume(opt_name, sched_cfg):
    ref = _build(opt_name, sched_cfg, seed=0)
    _train(*ref, 0, 10)

    first = _build(opt_name, sched_cfg, seed=0)
    _train(*first, 0, 5)
    buf = io.BytesIO()
    net, opt, sched, ema = first
    torch.save(
        {
            "model": net.state_dict(),
            "optimizer": opt.state_dict(),
            "schedule": sched.state_dict(),
            "ema": ema.state_dict(),
        },
        buf,
    )
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=False)

    resumed = _build(opt_name, sched_cfg, seed=123)  # different init: everything must come from ckpt
    net2, opt2, sched2, ema2 = resumed
    net2.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["optimizer"])
    sched2.load_state_dict(ckpt["schedule"])
    ema2.load_state_dict(ckpt["ema"])
    _train(*resumed, 5, 10)

    for (k, a), b in zip(ref[0].state_dict().items(), net2.state_dict().values()):
        assert torch.equal(a, b), k
    for (k, a), b in zip(ref[3].shadow.state_dict().items(), ema2.shadow.state_dict().values()):
        assert torch.equal(a, b), f"ema {k}"
    assert ref[1].param_groups[0]["lr"] == opt2.param_groups[0]["lr"]
    assert ref[3].num_updates == ema2.num_updates == 10
    s_ref, s_new = ref[1].state_dict()["state"], opt2.state_dict()["state"]
    for i in s_ref:
        for k, v in s_ref[i].items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(s_new[i][k])), (i, k)
