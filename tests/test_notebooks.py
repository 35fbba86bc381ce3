"""Every chapter runs end to end with preset 'smoke' (papermill, a fresh kernel each).

The executed copies land in ``_build/smoke/book/``, where ``make test`` renders them with
Jupyter Book, warnings as errors. Skip these with ``pytest -m "not notebook"``.
"""

import nbformat
import pytest

from csoa_nb.book import runbook

BUILD_DIR = runbook.REPO_ROOT / "_build" / "smoke"
NOTEBOOKS = runbook.notebooks_from_toc(runbook.REPO_ROOT / runbook.TOC_FILE)


@pytest.mark.notebook
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_with_smoke_preset(notebook):
    (executed,) = runbook.execute(preset="smoke", build_dir=BUILD_DIR, only=[notebook.stem])
    assert executed == BUILD_DIR / notebook
    nb = nbformat.read(executed, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert all(c.execution_count is not None for c in code), f"{notebook}: a cell did not run"
    assert any(c.outputs for c in code), f"{notebook}: the executed copy shows no output"
