# `make demo` and `make test` each build .venv on first use (about 1.5 min, 6 GB: PyPI's
# torch wheel is the CUDA build; it runs on CPU too) and reinstall when pyproject changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE ?= 1
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM ?= false

.PHONY: demo test test-slurm test-readme bench-gpu install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 tests -m "not slurm and not readme"

# README.md followed as written in a fresh directory: quick start (with the demo sweep), the offline
# check (the tiny Table 1 sweep), the Python example (~10 min on an idle 2-core machine)
test-readme: $(STAMP)
	$(BIN)/python -m pytest -p no:xdist tests/test_readme_runs.py -m readme

# a real single-node SLURM cluster (root; apt-get install slurm-wlm munge): the tiny Table 1 sweep
# through submitit with a cancelled job and a resume, and the search shared out by srun (~4 min)
test-slurm: $(STAMP)
	$(BIN)/python -m pytest -p no:xdist tests/test_slurm.py -m slurm

# the one GPU check (benchmarks/gpu_check.py): full-size random-weight PixArt-Sigma on one CUDA device,
# ~5-8 min; weights cached under $SKRR_CACHE/realsize (12 GB). Without CUDA it says so and exits 1.
bench-gpu: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py --workdir $${SKRR_CACHE:-$$HOME/.cache/skrr}/gpu_check

demo: $(STAMP)
	$(BIN)/skrr-run -m experiment=demo
	$(BIN)/skrr-report runs/results/demo.jsonl

clean:
	rm -rf $(VENV) runs
