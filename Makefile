# Set-up and the two commands the README starts with. Needs only Python 3.10+ (3.11 tested).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test install benchmarks clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)  ## the main job: the masking ablation sweep on the built-in synthetic data
	$(VENV)/bin/ajepa-sweep sweeps/masking.yaml

test: $(STAMP)  ## the whole test suite (CPU, a few minutes)
	$(PY) -m pytest -q

benchmarks: $(STAMP)
	$(PY) benchmarks/train_step.py
	$(PY) benchmarks/masks.py
	$(PY) benchmarks/probe.py

clean:
	rm -rf runs .cache .pytest_cache
