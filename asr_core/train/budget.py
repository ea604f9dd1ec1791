"""Fitting a run's length to its wall-clock budget (``loop.fit_to_budget``).

A recipe tuned as "N updates in M minutes" on one machine runs out of time on a slower one:
``loop.max_minutes`` then stops it wherever the clock says, mid-schedule, with its learning rate
still high. With ``fit_to_budget`` the loop times
``fit_after_steps`` updates (after :data:`SKIP_STEPS` that carry one-off costs: the allocator,
the loader's start, oneDNN's first primitives), and when ``max_steps`` would not fit in what is
left of ``max_minutes`` it shortens the run to what does, rebuilding the schedule for that length
(``Schedule.with_total_steps``), so the decay ends on time; it refines the length once more after
four times as many steps (:data:`FIT_AT`). A faster machine keeps ``max_steps``.

The fitted length is decided by rank 0 and kept in the checkpoints (``planned_steps`` of the loop
state): a resumed run keeps it and fits no more, so from there on the run is as reproducible as
a step-bounded one. Two machines of different speed train different numbers of steps; the report
says how many (``planned_steps``, ``stopped_by: fitted_steps``).
"""

from __future__ import annotations

import math

SKIP_STEPS = 5  # steps after the start (or a resume) that are not timed
# The length is fitted after fit_after_steps timed steps, then refined after 4x as many: the first
# steps of a run are slower than the rest (oneDNN builds primitives for each new batch shape), so the
# first estimate is long by ~10%. The refit moves the learning rate by well under 1%.
FIT_AT = (1, 4)
# Share of the budget not planned for updates: the evaluations and checkpoints still to come, the
# last evaluation and the model files. ``max_minutes`` stays the hard stop if they take longer.
MARGIN = 0.06


def fitted_steps(
    *,
    done: int,
    max_steps: int,
    elapsed_s: float,
    step_s: float,
    budget_s: float,
    min_steps: int = 1,
    margin: float = MARGIN,
) -> int:
    """Total updates of a run that has done ``done`` in ``elapsed_s`` seconds of its ``budget_s``
    and takes ``step_s`` seconds an update: ``max_steps`` when they fit, else as many as fit in
    the budget less its ``margin`` share, but at least ``min_steps`` (the schedule's warm-up and
    hold) and one more than ``done``."""
    if step_s <= 0 or not math.isfinite(step_s):
        raise ValueError(f"step time must be a positive number of seconds, got {step_s}")
    left = budget_s * (1.0 - margin) - elapsed_s
    fit = done + max(0, math.floor(left / step_s))
    return int(min(max_steps, max(fit, min_steps, done + 1)))
