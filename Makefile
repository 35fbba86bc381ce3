# csoa-book: `make book` builds the book, `make test` checks it (see README.md).
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
PRESET ?= cpu
DEVICE ?= cpu
VENV := .venv
PY := $(VENV)/bin/python
# pytest-xdist workers of `make test`; a test file runs on one worker, in its order (its
# module-scoped fixtures made once; the notebooks, which share smoke runs, one at a time).
TEST_WORKERS ?= 2
STAMP := $(VENV)/.stamp

# Notebook runs: unbuffered logs and a headless matplotlib outside the kernel (the runbook gives
# each kernel its inline backend; `make lab` unsets it, so that ipykernel picks its inline
# backend). OMP_NUM_THREADS is left to the caller.
export PYTHONUNBUFFERED := 1
export MPLBACKEND := Agg

# `make lab`: the folder it opens and extra arguments for `jupyter lab` (tests/browser passes a
# port and a token: make lab LAB_ARGS='--port=8890 --IdentityProvider.token=...').
LAB_DIR ?= book
LAB_ARGS ?=
# Lab's settings defaults for this project (jupyter-config/labconfig/
# default_setting_overrides.json: save widget state in notebooks), ahead of the caller's
# JUPYTER_CONFIG_PATH; a user's own Lab settings still win.
LAB_CONFIG_PATH := $(CURDIR)/jupyter-config$(if $(JUPYTER_CONFIG_PATH),:$(JUPYTER_CONFIG_PATH))

.PHONY: help test test-browser book lab results clean

help:
	@echo "make book     execute every notebook (PRESET=$(PRESET), DEVICE=$(DEVICE)), HTML in _build/html"
	@echo "make test     ruff, pytest (notebooks with preset smoke), strict HTML build of that run,"
	@echo "              checks over that HTML (tests/test_built_html.py)"
	@echo "make test-browser  the built book and make lab in headless chromium (after make book)"
	@echo "make lab      JupyterLab on book/"
	@echo "make results  train the missing runs of the book's sweeps into results/runs (about two hours from nothing)"
	@echo "make clean    remove _build (keeps data/, runs/, results/)"

# A fresh clone installs itself; a changed pyproject.toml refreshes the environment.
# pip byte-compiles what it installs on one core; compileall does the same on every core in
# less than half the time (the environment may set PYTHONDONTWRITEBYTECODE, so the files must be
# compiled here or every process would compile torch again). A file that does not compile (a
# package's Python 2 leftovers) is skipped, as pip skips it.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --no-compile -e '.[book,test]'
	$(PY) -m compileall -qq -j 0 "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" || true
	touch $@

test: $(STAMP)
	rm -rf _build/smoke _build/smoke-html
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadfile
	$(PY) -m csoa_nb.book.runbook build --build-dir _build/smoke --html-out _build/smoke-html --strict
	$(VENV)/bin/pytest -q tests/test_built_html.py

book: $(STAMP)
	$(PY) -m csoa_nb.book.runbook all --preset $(PRESET) --device $(DEVICE)

# Browser tests (tests/browser, not part of `make test`): the HTML of `make book` and `make lab`
# itself, in Debian's chromium through /usr/bin/chromedriver.
test-browser: $(STAMP)
	$(VENV)/bin/pytest -q tests/browser

# (--allow-root only where make runs as root, e.g. in a container). Without MPLBACKEND, ipykernel
# draws figures inline; with Agg (exported above) every figure of the chapters would be lost.
lab: $(STAMP)
	env -u MPLBACKEND JUPYTER_CONFIG_PATH="$(LAB_CONFIG_PATH)" \
	  $(VENV)/bin/jupyter lab --notebook-dir="$(LAB_DIR)" --no-browser \
	  $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

results: $(STAMP)
	$(PY) -m csoa_nb.engine.results make

clean:
	rm -rf _build
