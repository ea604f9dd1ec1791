# The two set-up commands of the README are `make run` and `make test`; each installs
# what it needs first (scripts/bootstrap.sh, idempotent).
SHELL := /bin/bash
ENV := source scripts/env.sh &&

.PHONY: install run test test-fast bench clean-data

install:
	@bash scripts/bootstrap.sh

## run: install, then the whole pipeline on the built-in default (dvc repro)
run: install
	@$(ENV) dvc repro
	@$(ENV) python -m tasks.summary reports

## test: install, then the test suite (what CI runs)
test: install
	@$(ENV) python -m pytest -q

## bench: speed figures (prepare throughput, training throughput and Ray overhead, ...) written under bench/results/
bench: install
	@$(ENV) python bench/bench_prepare.py --minutes 30 --out bench/results/prepare.json
	@$(ENV) python bench/bench_train.py --out bench/results/train.json

clean-data:
	rm -rf data reports .dvc/cache .dvc/tmp
