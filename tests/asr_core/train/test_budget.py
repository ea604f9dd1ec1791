"""Fitting a run's length to its budget: the arithmetic (the loop's use: test_engine.py)."""

from __future__ import annotations

import pytest

from asr_core.train import ScheduleConfig, build_schedule
from asr_core.train.budget import MARGIN, fitted_steps


def test_steps_that_fit_are_kept_and_the_rest_is_cut_to_the_budget():
    kw = dict(done=35, elapsed_s=30.0, budget_s=600.0)
    assert fitted_steps(max_steps=500, step_s=0.5, **kw) == 500  # 500 * 0.5 s fit in 600 s
    assert fitted_steps(max_steps=2100, step_s=0.5, **kw) == 35 + int((600 * (1 - MARGIN) - 30) / 0.5)
    assert fitted_steps(max_steps=2100, step_s=100.0, min_steps=151, **kw) == 151  # the warm-up at least
    assert fitted_steps(max_steps=2100, step_s=0.5, done=35, elapsed_s=900.0, budget_s=600.0) == 36


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_a_step_time_that_is_not_a_duration_is_refused(bad):
    with pytest.raises(ValueError, match="step time"):
        fitted_steps(done=1, max_steps=10, elapsed_s=0.0, step_s=bad, budget_s=10.0)


def test_schedules_rebuild_for_a_new_length():
    poly = build_schedule(ScheduleConfig(name="polynomial", warmup_steps=10, final_lr_scale=0.1), 1.0, total_steps=1000)
    short = poly.with_total_steps(100)
    assert short.lr_at(100) == pytest.approx(0.1) and poly.lr_at(100) > 0.9
    assert short.lr_at(5) == poly.lr_at(5)  # the same warm-up
    assert poly.min_total_steps == 11
    expo = build_schedule(ScheduleConfig(name="exponential", warmup_steps=3), 1.0, steps_per_epoch=10)
    assert expo.with_total_steps(5) is expo  # its formula has no length
    ratio = build_schedule(ScheduleConfig(name="tri_stage", warmup_ratio=0.1, hold_ratio=0.4), 1.0, total_steps=1000)
    assert ratio.with_total_steps(100).state_dict()["fingerprint"]["warmup_steps"] == 10
