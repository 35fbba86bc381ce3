"""Shared pytest setup: a headless matplotlib backend and the ``notebook`` marker."""

import os
from pathlib import Path

import pytest

os.environ["MPLBACKEND"] = "Agg"


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "notebook: executes a book notebook with preset 'smoke' (skip with -m 'not notebook')",
    )


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder per test module: the synthetic sets its runs generate, shared by them."""
    return tmp_path_factory.mktemp("data")
