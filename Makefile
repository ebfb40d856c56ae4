# Set-up and the two commands the README starts with. Needs only Python 3.10+ (3.11 tested).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint tables ui install benchmarks clean

SPEC ?= sweeps/masking.yaml

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)  ## the main job: the masking ablation sweep on the built-in synthetic data
	$(VENV)/bin/ajepa-sweep sweeps/masking.yaml

test: $(STAMP) lint  ## the lint check, then the whole test suite (CPU, a few minutes)
	$(PY) -m pytest -q

lint: $(STAMP)  ## ruff (config in pyproject.toml); `ruff check --fix` repairs import order
	$(VENV)/bin/ruff check

tables: $(STAMP)  ## the ablation table of a finished sweep: make tables [SPEC=sweeps/loss.yaml]
	$(VENV)/bin/ajepa-tables $(SPEC)

ui: $(STAMP)  ## the MLflow UI on the sweeps' store, at http://127.0.0.1:5000
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/runs/sweeps/mlflow.db --host 127.0.0.1

benchmarks: $(STAMP)
	$(PY) benchmarks/train_step.py
	$(PY) benchmarks/masks.py
	$(PY) benchmarks/probe.py

clean:
	rm -rf runs .cache .pytest_cache
