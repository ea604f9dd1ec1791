"""Training engine pieces: optimizers, learning-rate schedules, weight averaging.

Every piece has ``state_dict``/``load_state_dict`` so that a checkpoint resumes a
run exactly; schedules are pure functions of the update count.
"""

from asr_core.train.ema import EMA
from asr_core.train.optim import OPTIMIZERS, Novograd, build_optimizer, unwrap_model, weight_decay_groups
from asr_core.train.schedule import SCHEDULES, PlateauSchedule, Schedule, ScheduleConfig, build_schedule

__all__ = [
    "EMA",
    "OPTIMIZERS",
    "Novograd",
    "build_optimizer",
    "weight_decay_groups",
    "unwrap_model",
    "SCHEDULES",
    "PlateauSchedule",
    "Schedule",
    "ScheduleConfig",
    "build_schedule",
]
