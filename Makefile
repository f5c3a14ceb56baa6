# Two commands on a fresh machine: `make serve` and `make test`. Both use .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
REPO ?= model_repository
CONFIG ?=
SERVE_ARGS := $(if $(CONFIG),--config $(CONFIG),)

.PHONY: install install-dev serve test test-fast bench loadtest optimize clean

$(VENV)/.serve-installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[optimize,gpu,loadtest,report,test]'
	touch $(VENV)/.serve-installed $@

# Triton (PyTriton 0.7.0 ships Triton 2.51) needs numpy<2: it lives in its own venv, run as a subprocess.
.venv-triton/.installed:
	test -x .venv-triton/bin/python || $(PYTHON) -m venv .venv-triton
	.venv-triton/bin/python -m pip install -q "nvidia-pytriton==0.7.0" "onnxruntime==1.32.0" "numpy==1.26.4"
	touch $@

install: $(VENV)/.serve-installed
install-dev: $(VENV)/.dev-installed

$(REPO)/digits/1/card.json: | $(VENV)/.serve-installed
	$(PY) -m models.digits --repository $(REPO)

serve: $(VENV)/.serve-installed $(REPO)/digits/1/card.json
	$(VENV)/bin/wattgate serve $(SERVE_ARGS)

test: $(VENV)/.dev-installed .venv-triton/.installed
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: $(VENV)/.dev-installed
	$(PY) -m pytest -q -m "not integration"

bench: $(VENV)/.dev-installed .venv-triton/.installed $(REPO)/digits/1/card.json
	$(PY) -m bench.peers
	$(PY) -m bench.cache

loadtest: $(VENV)/.dev-installed $(REPO)/digits/1/card.json
	$(VENV)/bin/wattgate loadtest

optimize: $(VENV)/.dev-installed
	$(VENV)/bin/wattgate optimize digits
	$(VENV)/bin/wattgate optimize minilm

clean:
	rm -rf var loadtests/results .pytest_cache
