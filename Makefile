# Quick start on a fresh machine:
#   make pipeline   # create .venv, install the pinned requirements, run `dvc repro`
#   make test       # create .venv, install the pinned requirements, run the test suite
# Offline, point the download stage at a local copy of the datasets first:
#   export VAE_DATA_MIRROR=/absolute/path/to/mirror   (holds mnist/ and fashion-mnist/)

VENV ?= .venv
BIN := $(abspath $(VENV))/bin
# dvc runs each stage's `python -m stages.<name>` with this venv's python.
RUN := env PATH="$(BIN):$$PATH"

.PHONY: setup pipeline test lint bench

$(VENV)/.installed: requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(RUN) python -m vae.plots_page
	touch $@

setup: $(VENV)/.installed

pipeline: setup
	$(RUN) dvc repro

test: setup
	$(RUN) python -m pytest tests

lint: setup
	$(RUN) ruff check .

bench: setup
	$(RUN) python -m benchmarks.train_speed
