"""Switch off every tool's telemetry and update checks (imported first by every stage)."""

import os

OFFLINE_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "RAY_USAGE_STATS_ENABLED": "0",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
}

for _k, _v in OFFLINE_ENV.items():
    os.environ.setdefault(_k, _v)
