"""Shared pytest setup: a headless matplotlib backend, the ``notebook`` marker, and the order in
which `make test`'s workers take the test files."""

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


#: Test files that take longest, longest first (`pytest --durations` on two workers: the
#: notebooks about 270 s, the others 15-80 s each). `make test` hands files to its two workers
#: in collection order (`--dist loadfile --no-loadscope-reorder`); a long file taken last would
#: keep one worker busy after the other has finished.
LONGEST_FIRST = ("test_notebooks.py", "test_cluster.py", "test_results.py",
                 "test_train_distributed.py", "test_train.py", "test_distributed.py",
                 "test_faults.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Collect the files of `LONGEST_FIRST` first, in its order (the others keep theirs)."""

    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the tests of a file keep their order


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder per test module: the synthetic sets its runs generate, shared by them."""
    return tmp_path_factory.mktemp("data")


