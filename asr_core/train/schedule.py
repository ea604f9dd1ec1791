"""Learning-rate schedules as pure functions of the update count.

``step`` everywhere is the number of optimizer updates already done, so the lr for
the first update is ``lr_at(0)`` and a resumed run needs nothing but its step
counter (plateau adds a few numbers, kept in ``state_dict``). The loop calls
``schedule.apply(optimizer, step)`` before each ``optimizer.step()``; or wrap it as
``torch.optim.lr_scheduler.LambdaLR(optimizer, schedule.lr_lambda)``, whose
``last_epoch`` follows the same convention.

Schedules (each matches the source named; ``W``/``H`` warm-up/hold steps, ``T``
total steps, ``s`` the step, ``spe`` steps per epoch):

``exponential``  DLE QuartzNet/Jasper ``lr_policy(policy='exponential')``:
    ``a = (s+1)/(W+1)`` for s < W, 1 for s < W+H, then ``exp_gamma ** k`` with
    ``k = ceil((s-W-H)/spe)`` (DLE decays once per epoch: its epoch counter is
    ``ceil(s/spe)``); ``lr = max(a * base_lr, min_lr)``, the floor also applying
    during warm-up as in DLE. ``staircase=False`` uses ``k = (s-W-H)/spe`` instead.
    DLE recipe: 2 warm-up + 140 hold epochs, gamma 0.981, min_lr 1e-5.
``legacy``  DLE's other policy: same warm-up/hold, then ``((T-s)/(T-W-H)) ** 2``,
    floored at min_lr (s is clamped to T; DLE's formula grows again past T).
``polynomial``  wav2vec 2.0 pre-training (fairseq ``polynomial_decay``, DLE
    ``lr_poly_policy``): linear warm-up from ``init_lr_scale*base`` at s=0 to base at
    s=W, hold, then ``(base-end) * (1 - (s-W-H)/(T-W-H)) ** power + end`` with
    ``end = final_lr_scale*base``, and ``end`` from T on. With the defaults
    (init 0) the first update has lr 0, as in fairseq. DLE leaves the hold out of the
    decay fraction, so its curve jumps at the end of a hold; the recipe has no hold.
``tri_stage``  wav2vec 2.0 fine-tuning (fairseq ``TriStageLRSchedule``, DLE
    ``lr_exp_policy``): warm-up ``init + (base-init)/W * s`` from
    ``init_lr_scale=0.01``; hold; ``base * exp(ln(final_lr_scale) * (s-W-H)/D)`` with
    ``D = T-W-H``; then ``final_lr_scale*base`` (0.05). Recipe phases 10%/40%/50%
    (``warmup_ratio=0.1, hold_ratio=0.4``; fairseq ``phase_ratio``, int() truncation).
``plateau``  RNN-T (edgedict): warm-up ``min((s+1)/W, 1)``, then the peak is halved
    (``factor``) when the validation metric given to :meth:`PlateauSchedule.observe`
    has not improved for more than ``patience`` calls, floored at min_lr 1e-6:
    torch ``ReduceLROnPlateau`` rules (relative threshold, cooldown).

Off-by-one notes, all confined to the first update: DLE QuartzNet sets the lr only
after each update, so its very first update runs at the full base lr; DLE wav2vec 2.0
starts from its step-1 value. Here ``lr_at(0)`` follows the formula.

Warm-up and hold are given in steps, epochs (times ``steps_per_epoch``, rounded) or
as a fraction of ``total_steps`` (truncated) - one of the three for each.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

from asr_core.config import reject_unknown

SCHEDULES = ("exponential", "legacy", "polynomial", "tri_stage", "plateau")

# Options each schedule reads, with its default; None in the config means "this default".
_OPTIONS: dict[str, dict] = {
    "exponential": dict(min_lr=1e-5, exp_gamma=0.981, staircase=True),
    "legacy": dict(min_lr=1e-5),
    "polynomial": dict(power=1.0, init_lr_scale=0.0, final_lr_scale=0.0),
    "tri_stage": dict(init_lr_scale=0.01, final_lr_scale=0.05),
    "plateau": dict(min_lr=1e-6, factor=0.5, patience=1, threshold=1e-4, cooldown=0, mode="min"),
}
_ALL_OPTIONS = {k for opts in _OPTIONS.values() for k in opts}
_HOLDLESS = ("plateau",)


@dataclass
class ScheduleConfig:
    name: str = "exponential"
    warmup_steps: int = 0
    hold_steps: int = 0
    warmup_epochs: float = 0.0
    hold_epochs: float = 0.0
    warmup_ratio: float = 0.0
    hold_ratio: float = 0.0
    # Per-schedule options (see _OPTIONS for who reads what and the defaults).
    min_lr: float | None = None
    exp_gamma: float | None = None
    staircase: bool | None = None
    power: float | None = None
    init_lr_scale: float | None = None
    final_lr_scale: float | None = None
    factor: float | None = None
    patience: int | None = None
    threshold: float | None = None
    cooldown: int | None = None
    mode: str | None = None

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ValueError(f"schedule.name must be one of {list(SCHEDULES)}, got {self.name!r}")
        used = _OPTIONS[self.name]
        stray = [
            f.name
            for f in fields(self)
            if f.name in _ALL_OPTIONS and f.name not in used and getattr(self, f.name) is not None
        ]
        if stray:
            raise ValueError(f"schedule {self.name!r} does not use {stray}; it reads {sorted(used)}")
        for what in ("warmup", "hold"):
            given = [k for k in (f"{what}_steps", f"{what}_epochs", f"{what}_ratio") if getattr(self, k)]
            if len(given) > 1:
                raise ValueError(f"schedule: give {what} one way, got {given}")
            if any(getattr(self, k) < 0 for k in (f"{what}_steps", f"{what}_epochs", f"{what}_ratio")):
                raise ValueError(f"schedule: negative {what} in {self}")
        if self.name in _HOLDLESS and (self.hold_steps or self.hold_epochs or self.hold_ratio):
            raise ValueError(f"schedule {self.name!r} has no hold phase")
        o = self.options()
        if self.name == "tri_stage" and not (0.0 < o["final_lr_scale"] <= 1.0):
            raise ValueError(f"tri_stage final_lr_scale must be in (0, 1], got {o['final_lr_scale']}")
        if self.name == "plateau":
            if o["mode"] not in ("min", "max"):
                raise ValueError(f"plateau mode must be 'min' or 'max', got {o['mode']!r}")
            if not 0.0 < o["factor"] < 1.0:
                raise ValueError(f"plateau factor must be in (0, 1), got {o['factor']}")

    def options(self) -> dict:
        """The options this schedule reads, defaults filled in."""
        return {k: (d if getattr(self, k) is None else getattr(self, k)) for k, d in _OPTIONS[self.name].items()}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ScheduleConfig:
        reject_unknown(cls, d, "schedule")
        return cls(**d)


class Schedule:
    """``lr_at(step)`` for a pure schedule; ``apply`` writes it into every param group."""

    watches_metric = False  # True: the loop hands it each evaluation's metric (``observe``)

    def __init__(
        self,
        name: str,
        base_lr: float,
        fn: Callable[[int], float],
        fingerprint: dict,
        rebuild: Callable[[int], Schedule] | None = None,
    ):
        self.name = name
        self.base_lr = base_lr
        self._fn = fn
        self._fingerprint = fingerprint
        self._rebuild = rebuild  # the same schedule for another run length (None: no length in it)

    def lr_at(self, step: int) -> float:
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        return self._fn(int(step))

    def lr_lambda(self, step: int) -> float:
        """Multiplier of the base lr, for torch.optim.lr_scheduler.LambdaLR."""
        return self.lr_at(step) / self.base_lr

    def apply(self, optimizer, step: int) -> float:
        lr = self.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def with_total_steps(self, total_steps: int) -> Schedule:
        """This schedule for a run of ``total_steps`` updates (a run fitted to its time budget,
        :mod:`asr_core.train.budget`); itself where the length does not enter the formula."""
        return self if self._rebuild is None else self._rebuild(total_steps)

    @property
    def min_total_steps(self) -> int:
        """The fewest total steps this schedule can be rebuilt for: its warm-up plus hold, plus one."""
        return self._fingerprint["warmup_steps"] + self._fingerprint["hold_steps"] + 1

    def state_dict(self) -> dict:
        return {"fingerprint": dict(self._fingerprint)}

    def load_state_dict(self, state: dict) -> None:
        """Pure schedules have no state; this refuses to resume into a different schedule."""
        saved = state["fingerprint"]
        if saved != self._fingerprint:
            diff = {
                k: (saved.get(k), self._fingerprint.get(k))
                for k in sorted(set(saved) | set(self._fingerprint))
                if saved.get(k) != self._fingerprint.get(k)
            }
            raise ValueError(f"checkpoint schedule differs from this one (saved, now): {diff}")


class PlateauSchedule(Schedule):
    """Warm-up, then a peak lr cut by ``factor`` when :meth:`observe` sees no progress.

    The cut follows torch's ReduceLROnPlateau: a value is better when it beats the best
    by more than ``threshold`` (relative); after more than ``patience`` calls without
    progress the peak becomes ``max(peak * factor, min_lr)``, then ``cooldown`` calls are
    ignored. Call ``observe`` once per validation.
    """

    def __init__(self, base_lr: float, warmup_steps: int, opts: dict, fingerprint: dict):
        super().__init__("plateau", base_lr, self._lr, fingerprint)
        self.warmup_steps = warmup_steps
        self.opts = opts
        self.peak_lr = base_lr
        self.best = math.inf if opts["mode"] == "min" else -math.inf
        self.num_bad = 0
        self.cooldown_left = 0
        self.num_reductions = 0

    def _lr(self, step: int) -> float:
        warm = 1.0 if self.warmup_steps == 0 else min((step + 1) / self.warmup_steps, 1.0)
        return self.peak_lr * warm

    def _better(self, value: float) -> bool:
        rel = self.opts["threshold"]
        if self.opts["mode"] == "min":
            return value < self.best * (1.0 - rel)
        return value > self.best * (1.0 + rel)

    watches_metric = True

    def observe(self, metric: float) -> bool:
        """Record a validation metric; True when this call lowered the lr."""
        value = float(metric)
        if math.isnan(value):
            raise ValueError("plateau schedule got a NaN validation metric")
        if self._better(value):
            self.best, self.num_bad = value, 0
        else:
            self.num_bad += 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.num_bad = 0
        if self.num_bad > self.opts["patience"]:
            self.cooldown_left = self.opts["cooldown"]
            self.num_bad = 0
            new = max(self.peak_lr * self.opts["factor"], self.opts["min_lr"])
            if self.peak_lr - new > 1e-8:  # as torch: changes below eps are skipped
                self.peak_lr = new
                self.num_reductions += 1
                return True
        return False

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "peak_lr": self.peak_lr,
            "best": self.best,
            "num_bad": self.num_bad,
            "cooldown_left": self.cooldown_left,
            "num_reductions": self.num_reductions,
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        for k in ("peak_lr", "best", "num_bad", "cooldown_left", "num_reductions"):
            setattr(self, k, state[k])


def _phase(cfg: ScheduleConfig, what: str, total_steps: int | None, spe: int | None) -> int:
    steps, epochs, ratio = (getattr(cfg, f"{what}_{u}") for u in ("steps", "epochs", "ratio"))
    if epochs:
        if not spe:
            raise ValueError(f"{what}_epochs={epochs} needs steps_per_epoch")
        return int(round(epochs * spe))
    if ratio:
        if not total_steps:
            raise ValueError(f"{what}_ratio={ratio} needs total_steps")
        return int(total_steps * ratio)
    return int(steps)


def build_schedule(
    cfg: ScheduleConfig,
    base_lr: float,
    total_steps: int | None = None,
    steps_per_epoch: int | None = None,
) -> Schedule:
    """The schedule ``cfg`` describes, for a run of ``total_steps`` updates.

    ``exponential`` needs ``steps_per_epoch``; ``legacy``, ``polynomial`` and
    ``tri_stage`` need ``total_steps``; epoch- or ratio-given phases need the one
    they are measured in.
    """
    if base_lr <= 0:
        raise ValueError(f"base_lr must be > 0, got {base_lr}")
    name, o = cfg.name, cfg.options()
    W = _phase(cfg, "warmup", total_steps, steps_per_epoch)
    H = _phase(cfg, "hold", total_steps, steps_per_epoch)
    fingerprint = {"name": name, "base_lr": base_lr, "warmup_steps": W, "hold_steps": H, **o}

    if name == "exponential":
        if not steps_per_epoch or steps_per_epoch < 1:
            raise ValueError(f"exponential schedule needs steps_per_epoch >= 1, got {steps_per_epoch}")
        fingerprint["steps_per_epoch"] = steps_per_epoch
        return Schedule(name, base_lr, _exponential(base_lr, W, H, steps_per_epoch, **o), fingerprint)
    if name == "plateau":
        return PlateauSchedule(base_lr, W, o, fingerprint)

    if not total_steps or total_steps < W + H:
        raise ValueError(f"{name} schedule needs total_steps >= warm-up + hold ({W} + {H}), got {total_steps}")
    fingerprint["total_steps"] = total_steps
    if name == "legacy":
        fn = _legacy(base_lr, W, H, total_steps, **o)
    elif name == "polynomial":
        fn = _polynomial(base_lr, W, H, total_steps, **o)
    else:
        fn = _tri_stage(base_lr, W, H, total_steps, **o)
    return Schedule(name, base_lr, fn, fingerprint, lambda n: build_schedule(cfg, base_lr, n, steps_per_epoch))


def _exponential(base, W, H, spe, min_lr, exp_gamma, staircase):
    def fn(s: int) -> float:
        if s < W:
            a = (s + 1) / (W + 1)
        elif s < W + H:
            a = 1.0
        else:
            k = (s - W - H) / spe
            a = exp_gamma ** (math.ceil(k) if staircase else k)
        return max(a * base, min_lr)

    return fn


def _legacy(base, W, H, T, min_lr):
    def fn(s: int) -> float:
        if s < W:
            a = (s + 1) / (W + 1)
        elif s < W + H:
            a = 1.0
        else:
            a = ((T - min(s, T)) / (T - W - H)) ** 2 if T > W + H else 0.0
        return max(a * base, min_lr)

    return fn


def _polynomial(base, W, H, T, power, init_lr_scale, final_lr_scale):
    start, end = init_lr_scale * base, final_lr_scale * base

    def fn(s: int) -> float:
        if s < W:
            return start + s / W * (base - start)
        if s <= W + H:
            return base
        if s < T:
            remain = 1 - (s - W - H) / (T - W - H)
            return (base - end) * remain**power + end
        return end

    return fn


def _tri_stage(base, W, H, T, init_lr_scale, final_lr_scale):
    init, final = init_lr_scale * base, final_lr_scale * base
    rate = (base - init) / W if W else 0.0
    D = T - W - H
    decay = -math.log(final_lr_scale) / D if D else 0.0

    def fn(s: int) -> float:
        if s < W:
            return init + rate * s
        if s < W + H:
            return base
        if s <= W + H + D:
            return base * math.exp(-decay * (s - W - H))
        return final

    return fn
