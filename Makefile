# Quick start on a fresh machine:
#   make pipeline   # create .venv, install the pinned requirements, run `dvc repro`
#   make test       # create .venv, install the pinned requirements, run the test suite
# Offline, point the download stage at a local copy of the datasets first:
#   export VAE_DATA_MIRROR=/absolute/path/to/mirror   (holds mnist/ and fashion-mnist/)

VENV ?= .venv
BIN := $(abspath $(VENV))/bin
# dvc runs each stage's `python -m stages.<name>` with this venv's python.
RUN := env PATH="$(BIN):$$PATH"

.PHONY: setup pipeline test check lint bench paper study report slurm collect samples-figure

$(VENV)/.installed: requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(RUN) python -m vae.runtime.plots_page
	touch $@

setup: $(VENV)/.installed

pipeline: setup
	$(RUN) dvc repro

# Everything, as CI runs it: ruff, then every test, on TEST_WORKERS pytest-xdist workers (tests of one
# xdist_group on one worker; the small pipeline the end-to-end tests copy is built once per run).
TEST_WORKERS ?= 2
PYTEST := python -m pytest tests -n $(TEST_WORKERS) --dist loadgroup
test: setup
	$(RUN) ruff check .
	$(RUN) $(PYTEST)

# The edit-test loop: ruff and every test that runs no stage, DVC or SLURM as a subprocess.
check: setup
	$(RUN) ruff check .
	$(RUN) $(PYTEST) -m "not e2e"

lint: setup
	$(RUN) ruff check .

bench: setup
	$(RUN) python -m benchmarks.train_speed
	$(RUN) python -m benchmarks.numerics

# A study (studies/$(STUDY).yaml): queue every run that is not done yet as a named DVC
# experiment and start JOBS queue workers in the background, each run with `threads: THREADS`
# (1 thread per worker uses the cores best); follow with `dvc queue status`. Then
# `make report STUDY=...` writes docs/results/$(STUDY).{csv,md,png}. RUNS (shell patterns
# of run names, e.g. RUNS="variants-fashion-mnist-conv-*") runs only part of the study.
STUDY ?= smoke
RUNS ?=
RUN_PATTERNS = --runs $(foreach pattern,$(RUNS),'$(pattern)')
JOBS ?= 2
THREADS ?= 1
study: setup
	$(RUN) python -m vae.studies queue $(STUDY) --threads $(THREADS) $(RUN_PATTERNS)
	$(RUN) dvc queue start -j $(JOBS) >/dev/null 2>&1  # workers must not hold make's output

report: setup
	$(RUN) python -m vae.studies report $(STUDY)

# docs/samples.png: an experiment's prior samples beside its latent-density samples.
SAMPLES_REV ?= variants-mnist-notebook-s1
samples-figure: setup
	$(RUN) python -m vae.studies.samples_figure --rev $(SAMPLES_REV) --out docs/samples.png

# The same study as a SLURM job array (docs/clusters.md): one task per run that the git
# origin lacks, each in its own clone under SLURM_WORKDIR (on a filesystem the nodes share),
# pushing its experiment to origin and its outputs to the DVC remote. SLURM_ARGS goes to
# sbatch as it is (it overrides the other settings). Then `make collect` and `make report`.
SLURM_PARTITION ?=
SLURM_CPUS ?= 2
SLURM_MEM ?= 4G
SLURM_TIME ?= 02:00:00
SLURM_WORKDIR ?= .slurm/work
SLURM_REMOTE ?=
SLURM_CACHE ?=
SLURM_REQUEUE ?= 1
SLURM_ARGS ?=
slurm: setup
	$(RUN) python -m vae.studies slurm $(STUDY) --partition="$(SLURM_PARTITION)" --cpus=$(SLURM_CPUS) \
		--mem=$(SLURM_MEM) --time=$(SLURM_TIME) --workdir="$(SLURM_WORKDIR)" --remote="$(SLURM_REMOTE)" \
		--cache="$(SLURM_CACHE)" --requeue=$(SLURM_REQUEUE) --sbatch-args="$(SLURM_ARGS)" $(RUN_PATTERNS)

collect: setup
	$(RUN) python -m vae.studies collect

# Burda et al. (2016), Table 1, VAE (k = 1), as the study studies/paper.yaml (docs/paper.md):
# queued as the experiment paper-mnist-vae-k1-s42 and run in the background (about 2 h on
# 2 cores); `make report STUDY=paper` then writes docs/results/paper.{csv,md}.
paper: setup
	$(MAKE) study STUDY=paper JOBS=1 THREADS=2

