"""The Hourglass benchmark code runs (tiny config, one step per configuration); no timing asserts."""

from __future__ import annotations

import torch

from asr_core.bench.hourglass import hourglass_plan, hourglass_table, markdown


def test_hourglass_plans_follow_dle():
    assert hourglass_plan(12, 4) == "[2, (8, 4), 2]"
    assert hourglass_plan(24, 2) == "[4, (16, 2), 4]"
    assert hourglass_plan(4, 3) == "[1, (2, 3), 1]"
    assert hourglass_plan(12, 1) is None


def test_hourglass_table_has_plain_and_every_factor_with_ratios():
    torch.set_num_threads(1)
    table = hourglass_table("tiny", (4,), batch_size=2, seconds=1.0, steps=1, warmup=0, log=lambda s: None)
    rows = table["rows"]
    assert [r["plan"] for r in rows] == ["plain", "[1, (2, 4), 1]"]
    # memory_ratio is None when the plain run's peak could not be measured in this process (freed memory of
    # earlier tests reused: no RSS growth); the benchmark itself runs each configuration in a fresh process
    assert rows[0]["speedup"] == 1.0 and rows[0]["memory_ratio"] in (1.0, None)
    assert len({r["parameters"] for r in rows}) == 1  # no extra parameters
    assert all(r["step_s"] > 0 and r["audio_s_per_s"] > 0 for r in rows)
    assert rows[1]["dle_speedup"] == 1.37 and "| [1, (2, 4), 1] |" in markdown(table)
