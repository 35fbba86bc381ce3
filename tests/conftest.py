"""Shared pytest setup: a headless matplotlib backend and the ``notebook`` marker."""

import os
from pathlib import Path

import pytest

os.environ["MPLBACKEND"] = "Agg"
if "PYTEST_XDIST_WORKER" in os.environ:
    # One thread per pytest-xdist worker (and for the processes its tests start: notebook
    # kernels, torchrun ranks, pool workers): `make test` runs one worker per core, and torch's
    # default of one thread per core in each would put two threads on every core.
    os.environ["OMP_NUM_THREADS"] = "1"


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "notebook: executes a book notebook with preset 'smoke' (skip with -m 'not notebook')",
    )


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder per test module: the synthetic sets its runs generate, shared by them."""
    return tmp_path_factory.mktemp("data")


