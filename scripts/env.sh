# Sourced by the Makefile targets: the venv first on PATH, every tool offline and quiet.
export PATH="$PWD/.venv/bin:$PATH"
export MLFLOW_DISABLE_TELEMETRY=true DVC_NO_ANALYTICS=1 PREFECT_SERVER_ANALYTICS_ENABLED=false
export RAY_USAGE_STATS_ENABLED=0 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
export PYTHONUNBUFFERED=1
