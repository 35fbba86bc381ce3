# csoa-book: `make book` builds the book, `make test` checks it (see README.md).
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
PRESET ?= cpu
DEVICE ?= cpu
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stamp

# Notebook runs: unbuffered logs and a headless matplotlib outside the kernel (the runbook gives
# each kernel its inline backend). OMP_NUM_THREADS is left to the caller.
export PYTHONUNBUFFERED := 1
export MPLBACKEND := Agg

.PHONY: help test book lab results clean

help:
	@echo "make book     execute every notebook (PRESET=$(PRESET), DEVICE=$(DEVICE)), HTML in _build/html"
	@echo "make test     ruff, pytest (notebooks with preset smoke), strict HTML build of that run,"
	@echo "              checks over that HTML (tests/test_built_html.py)"
	@echo "make lab      JupyterLab on book/"
	@echo "make results  train the missing runs of the book's sweeps into results/runs (about an hour)"
	@echo "make clean    remove _build (keeps data/, runs/, results/)"

# A fresh clone installs itself; a changed pyproject.toml refreshes the environment.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[book,test]'
	touch $@

test: $(STAMP)
	rm -rf _build/smoke _build/smoke-html
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q
	$(PY) -m csoa_nb.runbook build --build-dir _build/smoke --html-out _build/smoke-html --strict
	$(VENV)/bin/pytest -q tests/test_built_html.py

book: $(STAMP)
	$(PY) -m csoa_nb.runbook all --preset $(PRESET) --device $(DEVICE)

# (--allow-root only where make runs as root, e.g. in a container)
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=book --no-browser $(if $(filter 0,$(shell id -u)),--allow-root)

results: $(STAMP)
	$(PY) -m csoa_nb.results make

clean:
	rm -rf _build
