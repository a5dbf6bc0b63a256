# `make demo` and `make test` each build .venv on first use (about 1.5 min, 6 GB: PyPI's
# torch wheel is the CUDA build; it runs on CPU too) and reinstall when pyproject changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE ?= 1
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM ?= false

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 tests

demo: $(STAMP)
	$(BIN)/skrr-run -m experiment=demo
	$(BIN)/skrr-report runs/results/demo.jsonl

clean:
	rm -rf $(VENV) runs
