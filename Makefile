# The two set-up commands of the README are `make run` and `make test`; each installs
# what it needs first (scripts/bootstrap.sh, idempotent).
SHELL := /bin/bash
ENV := source scripts/env.sh &&

.PHONY: install run lint test test-fast bench bench-15x5 bench-hourglass clean-data servers servers-stop servers-status ui

install:
	@bash scripts/bootstrap.sh

## run: install, then the whole pipeline on the built-in default (dvc repro)
run: install
	@$(ENV) dvc repro
	@$(ENV) python -m tasks.summary reports

## servers: Prefect server + the process serving every deployment, on 127.0.0.1 (README "Orchestration")
servers: install
	@$(ENV) python -m flows.servers start

## ui: the MLflow UI over mlruns/ on 127.0.0.1 (one worker, no job runner)
ui: install
	@$(ENV) python -m flows.servers ui

servers-status:
	@$(ENV) python -m flows.servers status

## servers-stop: stop what `make servers` / `make ui` started
servers-stop:
	@$(ENV) python -m flows.servers stop

## lint: ruff (lint and format check), configured in pyproject.toml
lint: install
	@$(ENV) ruff check . && ruff format --check .

## test: install, then the test suite (what CI runs)
test: install
	@$(ENV) python -m pytest -q

## test-fast: the suite less the end-to-end tests marked slow (DVC pipelines, flows, servers, real speech)
test-fast: install
	@$(ENV) python -m pytest -q -m "not slow"

## bench: speed figures (prepare throughput, training throughput and Ray overhead, ...) written under bench/results/
bench: install
	@$(ENV) python bench/bench_prepare.py --minutes 30 --out bench/results/prepare.json
	@$(ENV) python bench/bench_train.py --out bench/results/train.json
	@$(ENV) python bench/bench_beam.py --out bench/results/beam.json

## bench-15x5: the inference grid (batch x clip x backend) on QuartzNet 15x5, README "Benchmark"
bench-15x5: install
	@$(ENV) python -m tasks.benchmark --params bench/benchmark_15x5.yaml --preset quartznet:15x5 \
		--out bench/results/qn15x5 --report bench/results/qn15x5.json

## bench-hourglass: wav2vec 2.0 Hourglass table (plain vs factors 2-6), README "wav2vec 2.0"; on a GPU:
## python bench/bench_hourglass.py --device cuda --preset base --precision bf16 --batch-size 8
bench-hourglass: install
	@$(ENV) python bench/bench_hourglass.py --threads 2 --out bench/results/hourglass_cpu.json

## gpu-check: every CUDA path of the project on one GPU in <= 8 minutes; writes bench/results/gpu_check/
## gpu_check.json and gpu_check.md (no GPU: python bench/gpu_check.py --device cpu --tiny; --strict: exit 1 on a failed row)
.PHONY: gpu-check
gpu-check: install
	@$(ENV) python bench/gpu_check.py --out bench/results/gpu_check

clean-data:
	rm -rf data reports .dvc/cache .dvc/tmp
