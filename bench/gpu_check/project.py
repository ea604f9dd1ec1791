"""Every import the GPU check takes from the project, in one place.

When a library module moves, this is the only file of the check to update. Nothing here may
pull in prefect, mlflow, dvc, ray, jiwer, soundfile or DALI at import time: the GPU machine has
none of them (``tests/bench/test_gpu_check.py`` runs the check with those imports blocked).
"""

from asr_core.bench.hourglass import DLE_TABLE, run_config
from asr_core.bench.measure import PeakMemory, latency_stats, machine_facts
from asr_core.export import export_onnx
from asr_core.export.runtime import BackendUnavailable, RunnerSpec, make_runner
from asr_core.features import FilterbankConfig, build_features
from asr_core.models import FAMILIES, build_model, ctc_loss, greedy_decode, model_config
from asr_core.train.ema import EMA
from asr_core.train.engine import RecipeBase, TrainConfig, train
from asr_core.train.optim import build_optimizer
from asr_core.train.precision import set_tf32
from asr_core.train.schedule import ScheduleConfig, build_schedule

__all__ = [
    "DLE_TABLE",
    "EMA",
    "FAMILIES",
    "BackendUnavailable",
    "FilterbankConfig",
    "PeakMemory",
    "RunnerSpec",
    "ScheduleConfig",
    "RecipeBase",
    "TrainConfig",
    "build_features",
    "build_model",
    "build_optimizer",
    "build_schedule",
    "ctc_loss",
    "export_onnx",
    "greedy_decode",
    "latency_stats",
    "machine_facts",
    "make_runner",
    "model_config",
    "run_config",
    "set_tf32",
    "train",
]
