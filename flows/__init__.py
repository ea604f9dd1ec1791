"""Prefect flows over the DVC stages (README "Orchestration: Prefect flows and deployments").

train_quartznet / train_jasper / benchmark_nightly: one module per flow; pipeline: their shared
body; steps: the Prefect tasks (one DVC stage, the registry); overrides and params: flow
parameters -> params values for one run; serve: the deployments; servers: start/stop the
local Prefect server, serve process and MLflow UI; config: params/flows.yaml.
"""
