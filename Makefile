# The two commands in the README: `make demo` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FP := $(BIN)/finance-pipeline
export DAGSTER_HOME ?= $(CURDIR)/var/dagster_home
DEMO_DAYS ?= 3
DEMO_SEED ?= 7

.PHONY: install demo gates dev test check-defs bench bench-large clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

## Seed a demo ledger on the embedded default (SQLite under ./var), start the sandboxes,
## materialize the daily pipeline for a few days and print where the results are.
demo: install $(DAGSTER_HOME)/dagster.yaml
	$(FP) demo run --days $(DEMO_DAYS) --seed $(DEMO_SEED)

## Every gate on the demo days, without signing or publishing (`finance-pipeline check`);
## after `make demo` every day passes.
gates: install $(DAGSTER_HOME)/dagster.yaml
	$(FP) demo check --days $(DEMO_DAYS)

## The Dagster UI on the demo data (sandboxes started alongside).
dev: install $(DAGSTER_HOME)/dagster.yaml
	$(FP) demo dev

check-defs: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster definitions validate -m finance_pipeline.definitions

test: install check-defs
	$(BIN)/pytest -q

## The 1M-entry day benchmark (Postgres on 127.0.0.1:5432): results in bench/results/.
bench: install
	$(BIN)/python -m bench.run --sizes 100000,1000000

## A 5M-entry day (not in CI; about half an hour): every stage and correctness check, peak RSS
## per stage against 6 GiB (held: 6,053 MiB at most, bench/README.md). The day is generated in parts; no sandboxes, so no HTTP or Dagster stage.
bench-large: install
	$(BIN)/python -m bench.run --sizes 5000000 --no-dagster --http-max 0 --tag large

clean:
	rm -rf var .pytest_cache
