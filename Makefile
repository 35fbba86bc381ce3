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
unexport PYTHONDONTWRITEBYTECODE

# `make lab`: the folder it opens and extra arguments for `jupyter lab` (tests/browser passes a
# port and a token: make lab LAB_ARGS='--port=8890 --IdentityProvider.token=...').
LAB_DIR ?= book
LAB_ARGS ?=
# Lab's settings defaults for this project (jupyter-config/labconfig/
# default_setting_overrides.json: save widget state in notebooks), ahead of the caller's
# JUPYTER_CONFIG_PATH; a user's own Lab settings still win.
LAB_CONFIG_PATH := $(CURDIR)/jupyter-config$(if $(JUPYTER_CONFIG_PATH),:$(JUPYTER_CONFIG_PATH))

.PHONY: help test test-browser book lab results clean lock

help:
	@echo "make book     execute every notebook (PRESET=$(PRESET), DEVICE=$(DEVICE)), HTML in _build/html"
	@echo "make test     ruff, pytest (notebooks with preset smoke), strict HTML build of that run,"
	@echo "              checks over that HTML (tests/test_built_html.py)"
	@echo "make test-browser  the built book and make lab in headless chromium (after make book)"
	@echo "make lab      JupyterLab on book/"
	@echo "make results  train the missing runs of the book's sweeps into results/runs (about two hours from nothing)"
	@echo "make clean    remove _build (keeps data/, runs/, results/)"
	@echo "make lock     write $(LOCK) again from pyproject.toml (after changing its dependencies)"

# A fresh clone installs itself; a changed pyproject.toml or lock file refreshes the environment.
# On Linux x86_64 with Python 3.11 (the project's machines) the versions come from $(LOCK),
# installed by uv, which reads the wheels in parallel (about 20 s here; pip takes 110 s for the
# same files), then the project itself, editable, with no dependencies. uv does not read pip's
# configuration, so it is given the indexes and wheel folders pip is configured with (`pip config
# list`: index-url, extra-index-url, find-links); should uv fail (a proxy or certificate only
# pip is configured with), pip installs the same lock. Elsewhere pip resolves pyproject.toml.
# Nothing is byte-compiled at install: Python writes each module's .pyc when it is first
# imported (PYTHONDONTWRITEBYTECODE, which an environment may set, is unset for make's commands),
# so only the modules in use are compiled (about a third of the environment's files; compiling all
# of them took 37 s on two cores).
LOCK := requirements-lock.txt
UV_VERSION := 0.13.10
PIP_INDEXES = $(PY) -m pip config list | sed -nE "s/^[^.]*\.(index-url|extra-index-url|find-links)='(.*)'$$/\1 \2/p"
$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	if [[ "$$(uname -sm)" == "Linux x86_64" && "$$($(PY) -c 'import sys; print(sys.version_info[:2])')" == "(3, 11)" ]]; then \
	  indexes=$$($(PIP_INDEXES) | while read -r key values; do for v in $$values; do printf -- '--%s %s ' "$$key" "$$v"; done; done); \
	  if ! ( $(VENV)/bin/pip install -q uv==$(UV_VERSION) && $(VENV)/bin/uv pip install -q \
	         --python $(PY) --index-strategy unsafe-best-match $$indexes -r $(LOCK) ); then \
	    echo "uv could not install $(LOCK): pip installs it" >&2; \
	    $(VENV)/bin/pip install -q --no-compile -r $(LOCK); \
	  fi; \
	  $(VENV)/bin/pip install -q --no-compile --no-deps --no-build-isolation -e .; \
	else \
	  $(VENV)/bin/pip install -q --no-compile -e '.[book,test]'; \
	fi
	touch $@

# $(LOCK) again from pyproject.toml: pip resolves it in a new environment, whose versions are
# written down (then `make` installs them).
lock:
	rm -rf _build/lock-venv
	$(PYTHON) -m venv _build/lock-venv
	_build/lock-venv/bin/pip install -q --no-compile '.[book,test]'
	{ sed -n '1,/^# pyproject.toml/p' $(LOCK); _build/lock-venv/bin/pip freeze | grep -v '^csoa-nb'; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf _build/lock-venv

test: $(STAMP)
	rm -rf _build/smoke _build/smoke-html
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
	$(PY) -m csoa_nb.book.runbook build --build-dir _build/smoke --html-out _build/smoke-html --strict
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) tests/test_built_html.py

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
