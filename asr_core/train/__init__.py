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

# The loop, its checkpoints and precision (engine.py, checkpoint.py, precision.py); the CTC recipe
# lives in asr_core.train.ctc_recipe (imported on demand: it pulls in the data and feature code).
from asr_core.train.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
)
from asr_core.train.engine import TrainConfig, TrainingAborted, dist_info, train
from asr_core.train.precision import PRECISIONS, Precision

__all__ += [
    "CheckpointError",
    "latest_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
    "TrainConfig",
    "TrainingAborted",
    "dist_info",
    "seed_everything",
    "train",
    "PRECISIONS",
    "Precision",
]
