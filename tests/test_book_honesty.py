"""The committed book is honest: the toc and book/ agree, and every notebook is committed
clean (no outputs), parametrised the same way and shaped like a chapter (STYLE.md)."""

import ast
import re
from pathlib import Path

import nbformat
import pytest

from csoa_nb.book.runbook import BOOK_DIR, REPO_ROOT, TOC_FILE, notebooks_from_toc

NAME_RE = re.compile(r"^\d{2}_[a-z0-9]+(?:_[a-z0-9]+)*\.ipynb$")
#: The ``parameters`` cell of every chapter, with these defaults (papermill overrides them).
PARAMETER_DEFAULTS = {
    "preset": "cpu",
    "data_root": "data",
    "device": "cpu",
    "seed": 0,
    "output_dir": "runs",
}

TOC_NOTEBOOKS = notebooks_from_toc(REPO_ROOT / TOC_FILE)
BOOK_NOTEBOOKS = sorted(
    p.relative_to(REPO_ROOT)
    for p in (REPO_ROOT / BOOK_DIR).rglob("*.ipynb")
    if ".ipynb_checkpoints" not in p.parts
)


def test_toc_and_book_folder_agree():
    assert TOC_NOTEBOOKS, f"{TOC_FILE} lists no notebook"
    assert len(set(TOC_NOTEBOOKS)) == len(TOC_NOTEBOOKS), f"{TOC_FILE} lists a notebook twice"
    missing = [str(p) for p in TOC_NOTEBOOKS if not (REPO_ROOT / p).is_file()]
    assert not missing, f"{TOC_FILE} lists notebooks that do not exist: {missing}"
    unlisted = sorted(set(map(str, BOOK_NOTEBOOKS)) - set(map(str, TOC_NOTEBOOKS)))
    assert not unlisted, f"notebooks in {BOOK_DIR}/ missing from {TOC_FILE}: {unlisted}"


def test_toc_is_in_reading_order():
    assert TOC_NOTEBOOKS[0] == Path(BOOK_DIR, "00_introduction.ipynb")
    assert all(p.parent == Path(BOOK_DIR) for p in TOC_NOTEBOOKS)
    assert [p.name for p in TOC_NOTEBOOKS] == sorted(p.name for p in TOC_NOTEBOOKS)


def _markdown_titles(source: str) -> list[str]:
    """Lines of a Markdown cell that are level-1 headings (code fences skipped)."""
    titles, fenced = [], False
    for line in source.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced and line.startswith("# "):
            titles.append(line)
    return titles


@pytest.fixture(params=BOOK_NOTEBOOKS, ids=lambda p: p.stem)
def notebook(request):
    return request.param, nbformat.read(REPO_ROOT / request.param, as_version=4)


def test_notebook_name(notebook):
    path, _ = notebook
    assert NAME_RE.match(path.name), f"{path}: name must be NN_snake_case.ipynb"


def test_committed_without_outputs(notebook):
    path, nb = notebook
    # `make lab` saves widget state (README.md): a PNG per widget image, never to be committed
    assert "widgets" not in nb.metadata, (
        f"{path} carries saved widget state: run `python -m csoa_nb.book.runbook strip {path}`"
    )
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert not cell.outputs, (
            f"{path} cell {index} has outputs: run `python -m csoa_nb.book.runbook strip {path}`"
        )
        assert cell.execution_count is None, f"{path} cell {index} has an execution count"
        tags = cell.metadata.get("tags", [])
        assert "injected-parameters" not in tags, f"{path} is a papermill output, not a source"


def test_kernelspec(notebook):
    path, nb = notebook
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", path


def test_one_parameters_cell_with_the_defaults(notebook):
    path, nb = notebook
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{path} has {len(cells)} cells tagged 'parameters', needs one"
    assert cells[0].cell_type == "code", f"{path}: the 'parameters' cell must be code"
    assigned = {}
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    assigned[target.id] = ast.literal_eval(node.value)
    for name, default in PARAMETER_DEFAULTS.items():
        assert name in assigned, f"{path}: the parameters cell does not assign {name}"
        assert assigned[name] == default, f"{path}: {name} defaults to {assigned[name]!r}"


def test_one_title_in_the_first_cell(notebook):
    path, nb = notebook
    assert nb.cells and nb.cells[0].cell_type == "markdown", f"{path}: start with Markdown"
    assert _markdown_titles(nb.cells[0].source)[:1] == [
        nb.cells[0].source.lstrip().splitlines()[0]
    ], f"{path}: the first cell must open with a '# ' title"
    titles = [t for c in nb.cells if c.cell_type == "markdown" for t in _markdown_titles(c.source)]
    assert len(titles) == 1, f"{path} has {len(titles)} '# ' titles: {titles}"
