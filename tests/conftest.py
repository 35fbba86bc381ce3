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




#: Test files whose tests are independent of each other and of module-scoped fixtures, so that
#: `make test` (`pytest -n 2 --dist loadgroup`) may give them to whichever worker is free.
SPREAD_FILES = ("test_notebooks.py",)


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist's `--dist loadgroup`, keep every other test file on one worker (its
    module-scoped fixtures made once, its tests in file order)."""
    for item in items:
        if item.path.name not in SPREAD_FILES:
            item.add_marker(pytest.mark.xdist_group(item.path.name))
