"""Shared pytest setup: a headless matplotlib backend and the ``notebook`` marker."""

import os

os.environ["MPLBACKEND"] = "Agg"


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "notebook: executes a book notebook with preset 'smoke' (skip with -m 'not notebook')",
    )
