"""`make lab` starts JupyterLab with inline figures and widget state saved in notebooks.

The recipe runs with a stand-in `jupyter` (a script in a fake virtual environment), which records
its arguments and environment, asks JupyterLab's own settings code for the overrides it would
apply, and starts a real `python3` kernel with that environment, as Lab would, to read its
matplotlib backend. The Makefile exports ``MPLBACKEND=Agg`` for the other targets; had it reached
Lab's kernels, no figure of `csoa_nb.report.plots` would show; without the
widget setting a saved notebook reopens with "Error displaying widget: model not found".
tests/browser checks both in a real Lab and browser (`make test-browser`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import nbformat
import pytest

from csoa_nb.book import runbook
from csoa_nb.book.runbook import REPO_ROOT

#: What ipykernel sets when MPLBACKEND is unset (ipykernel.kernelapp), i.e. inline figures.
INLINE = "module://matplotlib_inline.backend_inline"
WIDGETS_PLUGIN = "@jupyter-widgets/jupyterlab-manager:plugin"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

FAKE_JUPYTER = r'''
import json, os, sys
from jupyter_client.manager import start_new_kernel
from jupyterlab_server.settings_utils import _get_overrides

out = os.environ["CSOA_FAKE_JUPYTER_OUT"]
overrides, error = _get_overrides(os.path.join(os.path.dirname(out), "app-settings"))
lines = []
km, kc = start_new_kernel(kernel_name="python3")
try:
    kc.execute_interactive(
        "import matplotlib; print(matplotlib.get_backend())",
        output_hook=lambda msg: lines.append(msg["content"].get("text", "")),
        timeout=60,
    )
finally:
    kc.stop_channels()
    km.shutdown_kernel(now=True)
with open(out, "w", encoding="utf-8") as f:
    json.dump({"argv": sys.argv[1:], "env": dict(os.environ), "overrides": overrides,
               "error": str(error), "kernel_backend": "".join(lines).strip()}, f)
'''


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory) -> dict:
    """Run `make lab` with the stand-in jupyter; what it recorded."""
    if shutil.which("make") is None:
        pytest.skip("GNU make is not installed")
    venv = tmp_path_factory.mktemp("fake-venv")
    (venv / "bin").mkdir()
    script = venv / "fake_jupyter.py"
    script.write_text(FAKE_JUPYTER, encoding="utf-8")
    jupyter = venv / "bin" / "jupyter"
    jupyter.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n', encoding="utf-8")
    jupyter.chmod(0o755)
    (venv / ".stamp").touch()
    out = venv / "out" / "record.json"
    out.parent.mkdir()
    env = {**os.environ, "CSOA_FAKE_JUPYTER_OUT": str(out), "MPLBACKEND": "Agg"}
    env.pop("JUPYTER_CONFIG_PATH", None)
    # -o: the stamp is up to date (the recipe, not the install, is under test)
    subprocess.run(
        ["make", "-s", "-C", str(REPO_ROOT), "lab", f"VENV={venv}", "-o", f"{venv}/.stamp"],
        env=env, check=True, timeout=120, capture_output=True,
    )
    return json.loads(out.read_text(encoding="utf-8"))


def test_lab_kernels_draw_inline(lab_run):
    assert "MPLBACKEND" not in lab_run["env"], (
        f"make lab passes MPLBACKEND={lab_run['env']['MPLBACKEND']!r} to Lab's kernels"
    )
    assert lab_run["kernel_backend"] in (INLINE, "inline"), (
        f"a kernel started like Lab's has matplotlib backend {lab_run['kernel_backend']!r}"
    )


def test_lab_saves_widget_state(lab_run):
    assert lab_run["error"] == ""
    assert lab_run["overrides"].get(WIDGETS_PLUGIN, {}).get("saveState") is True, (
        f"Lab's settings overrides under make lab: {lab_run['overrides']}"
    )


def test_lab_opens_the_book(lab_run):
    argv = lab_run["argv"]
    assert argv[0] == "lab"
    assert "--notebook-dir=book" in argv and "--no-browser" in argv, argv


def test_strip_makes_a_lab_saved_chapter_committable(tmp_path, capsys):
    """What Lab adds on save (outputs, counts, widget state) goes; the chapter is as committed."""
    source = REPO_ROOT / "book" / "02_cam_baseline.ipynb"
    committed = nbformat.read(source, as_version=4)
    saved = nbformat.read(source, as_version=4)
    saved.metadata["widgets"] = {WIDGET_STATE: {"state": {"m1": {"model_name": "ImageModel"}},
                                                "version_major": 2, "version_minor": 0}}
    code = [cell for cell in saved.cells if cell.cell_type == "code"]
    for count, cell in enumerate(code, start=1):
        cell.execution_count = count
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"cell {count}\n")]
    path = tmp_path / source.name
    nbformat.write(saved, path)

    runbook.main(["strip", str(path)])
    assert nbformat.read(path, as_version=4) == committed
    runbook.main(["strip", str(path)])
    assert capsys.readouterr().out.splitlines() == [
        f"{path}: stripped", f"{path}: no outputs, nothing to do"
    ]
    with pytest.raises(SystemExit, match="is not a notebook file"):
        runbook.main(["strip", str(tmp_path / "missing.ipynb")])
