"""`make lab` in a browser: chapters 02 and 03 run, draw their figures, and their widgets work.

Lab is started by the Makefile's own recipe (browser_support.start_lab) on copies of the chapters in
``_build/browser/lab``; the browser clicks Lab's menus as a reader would (Run > Run All Cells,
File > Save Notebook), drags the theta slider and picks from the mask inspector's dropdown.
Each chapter loads its committed run from ``results/runs``, so nothing trains.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from browser_support import SHOTS
from selenium.common.exceptions import (
    JavascriptException,
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

#: Seconds a chapter may take to run top to bottom in Lab (about 12 s here).
RUN_S = 240
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGETS_PLUGIN = "@jupyter-widgets/jupyterlab-manager:plugin"
MODEL_NOT_FOUND = "Error displaying widget"

# The visible notebook panel and its cells, as JavaScript expressions.
PANEL_JS = """
const panel = [...document.querySelectorAll('.jp-NotebookPanel')]
    .find(p => !p.classList.contains('lm-mod-hidden') && p.offsetParent !== null);
"""
CELLS_JS = PANEL_JS + "const cells = panel ? [...panel.querySelectorAll('.jp-Cell')] : [];\n"


def wait_for(condition, timeout: float, what: str, interval: float = 0.5):
    """Poll `condition()` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except (JavascriptException, NoSuchElementException,
                StaleElementReferenceException) as err:
            last = err
        else:
            if last:
                return last
        time.sleep(interval)
    pytest.fail(f"{what}: not within {timeout:.0f} s (last: {last!r})", pytrace=False)


def dismiss_notifications(driver) -> None:
    """Close Lab's toasts (e.g. "get notified about official Jupyter news?": No)."""
    driver.execute_script("""
        document.querySelectorAll('.jp-toast-button, .Toastify__close-button').forEach(b => {
            if (b.textContent.trim() === 'No' || b.classList.contains('Toastify__close-button'))
                b.click();
        });""")


def menu(driver, label: str, item: str) -> None:
    """Click the menu `label` of Lab's menu bar, then its entry `item` (as a reader would)."""
    driver.find_element(
        By.XPATH, f"//div[contains(@class,'lm-MenuBar-itemLabel') and text()='{label}']"
    ).click()
    entry = wait_for(lambda: driver.find_element(
        By.XPATH, "//li[contains(@class,'lm-Menu-item')][.//div[contains(@class,"
                  f"'lm-Menu-itemLabel') and normalize-space()='{item}']]"),
        10, f"menu {label} > {item}")
    entry.click()


def open_notebook(driver, lab, name: str) -> None:
    """Open `name` in Lab (logging in with the token) and wait for its kernel to be idle."""
    driver.get(f"{lab.url}/lab/tree/{name}?token={lab.token}")

    def ready():
        sessions = [s for s in lab.api("/api/sessions") if s["path"].endswith(name)]
        return (sessions and sessions[0]["kernel"]["execution_state"] == "idle"
                and driver.execute_script(PANEL_JS + """
            const title = document.querySelector('.lm-DockPanel-tabBar .lm-mod-current');
            const status = [...document.querySelectorAll('.jp-StatusBar-Item')]
                .some(e => / \\| Idle$/.test(e.textContent.trim()));
            return !!panel && !!title && title.textContent.includes(arguments[0]) && status;
            """, name))

    wait_for(ready, 120, f"{name} open in Lab with an idle kernel")
    dismiss_notifications(driver)


def cell_index(driver, text: str, timeout: float = 30) -> int:
    """Index of the first cell of the visible notebook whose source contains `text` (waiting
    while a just opened notebook is still drawing its editors)."""
    def find() -> int | None:
        index = driver.execute_script(
            CELLS_JS + "return cells.findIndex(c => (c.querySelector('.cm-content') || {})"
                       ".textContent?.includes(arguments[0]));", text)
        return index + 1 if index >= 0 else None  # 0 would read as "not yet"

    return wait_for(find, timeout, f"a cell of the open notebook that contains {text!r}") - 1


def cell_output(driver, index: int):
    """The output area of cell `index`, scrolled into view."""
    element = driver.execute_script(
        CELLS_JS + "const c = cells[arguments[0]]; c.scrollIntoView({block: 'start'});"
                   "return c.querySelector('.jp-OutputArea');", index)
    assert element is not None, f"cell {index} has no output area"
    return element


def run_all(driver, name: str) -> None:
    """Run > Run All Cells, then wait until every code cell has an execution count."""
    menu(driver, "Run", "Run All Cells")

    def done():
        prompts = driver.execute_script(CELLS_JS + """
            return cells.filter(c => c.classList.contains('jp-CodeCell'))
                        .map(c => c.querySelector('.jp-InputPrompt').textContent.trim());""")
        return prompts and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts) and prompts

    wait_for(done, RUN_S, f"{name}: every code cell executed")


def save(driver, path: Path) -> dict:
    """File > Save Notebook; the notebook as written to disk."""
    before = path.stat().st_mtime_ns
    menu(driver, "File", "Save Notebook")
    wait_for(lambda: path.stat().st_mtime_ns != before, 30, f"{path.name} saved")
    time.sleep(0.5)  # the write itself
    return json.loads(path.read_text(encoding="utf-8"))


def error_outputs(nb: dict) -> list[str]:
    return [f"cell {i}: {o.get('ename')}: {o.get('evalue')}"
            for i, cell in enumerate(nb["cells"]) for o in cell.get("outputs", [])
            if o.get("output_type") == "error"]


def image_state(driver, output) -> dict:
    """Widget texts and images inside an output area."""
    return driver.execute_script("""
        const out = arguments[0];
        const imgs = [...out.querySelectorAll('img')];
        return {
          html: [...out.querySelectorAll('.widget-html-content')].map(e => e.textContent.trim()),
          srcs: imgs.map(i => i.src.length + ':' + i.src.slice(-64)),
          widths: imgs.map(i => i.complete ? i.naturalWidth : 0),
          text: out.textContent,
          sliders: out.querySelectorAll('.widget-hslider, .widget-slider').length,
        };""", output)


@dataclass
class Chapter:
    name: str
    path: Path
    run_s: float


@pytest.fixture(scope="module")
def chapter02(driver, lab) -> Chapter:
    """Chapter 02 opened in `make lab` and run top to bottom with its default parameters."""
    name = "02_cam_baseline.ipynb"
    open_notebook(driver, lab, name)
    start = time.monotonic()
    run_all(driver, name)
    return Chapter(name, lab.root / name, time.monotonic() - start)


def test_lab_saves_widget_state(lab):
    """The project's Lab default (jupyter-config/labconfig) reaches the running server."""
    settings = lab.api(f"/lab/api/settings/{WIDGETS_PLUGIN}")
    # the server sends the schema with the defaults overridden, and the user's settings
    default = settings["schema"]["properties"]["saveState"]["default"]
    assert settings["settings"].get("saveState", default) is True, (default, settings["raw"])


def test_chapter02_runs_and_draws_its_figures(driver, chapter02):
    nb = save(driver, chapter02.path)
    assert not error_outputs(nb), error_outputs(nb)
    printed = "".join(text for cell in nb["cells"] for out in cell.get("outputs", [])
                      for text in out.get("text", []))
    assert "(loaded" in printed, f"chapter 02 did not load its committed run: {printed[:500]}"
    figure_cells = [i for i, c in enumerate(nb["cells"])
                    if "".join(c["source"]).startswith("fig = plots.")]
    assert len(figure_cells) == 3, figure_cells
    for index in figure_cells:
        output = cell_output(driver, index)
        source = "".join(nb["cells"][index]["source"])
        wait_for(lambda o=output: any(image_state(driver, o)["widths"]), 10,
                 f"the figure of cell {index} ({source}) shown in Lab", interval=0.25)
        saved = [o for o in nb["cells"][index]["outputs"] if "image/png" in o.get("data", {})]
        assert saved, f"cell {index} ({source}) saved no figure"
    print(f"chapter 02 ran in Lab in {chapter02.run_s:.1f} s")


def test_theta_slider_changes_box_and_image(driver, chapter02):
    index = cell_index(driver, "theta_explorer(cams")
    output = cell_output(driver, index)
    before = wait_for(lambda: (s := image_state(driver, output))["html"] and any(s["widths"])
                      and s, 30, "the theta explorer")
    assert before["sliders"] == 1, before
    assert re.match(r"theta = 0\.\d\d: box \(", before["html"][0]), before["html"]
    handle = output.find_element(By.CSS_SELECTOR, ".noUi-handle")
    ActionChains(driver).drag_and_drop_by_offset(handle, 40, 0).perform()
    after = wait_for(lambda: (s := image_state(driver, output))["html"] != before["html"]
                     and s["srcs"] != before["srcs"] and any(s["widths"]) and s,
                     30, "box text and image after moving the slider")
    theta = [float(re.match(r"theta = ([\d.]+)", s["html"][0]).group(1)) for s in (before, after)]
    assert theta[1] > theta[0], theta
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", output)
    SHOTS.mkdir(parents=True, exist_ok=True)
    output.screenshot(str(SHOTS / "theta_explorer.png"))


def test_saved_notebook_reopens_with_its_widgets(driver, lab, chapter02):
    """File > Save, close the kernel, reopen: the explorer shows, drawn from the saved state."""
    nb = save(driver, chapter02.path)
    state = nb["metadata"].get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    models = sorted({m["model_name"] for m in state.values()})
    for session in lab.api("/api/sessions"):  # closes the kernel: only the file remains
        lab.api(f"/api/sessions/{session['id']}", method="DELETE")
    open_notebook(driver, lab, chapter02.name)
    output = cell_output(driver, cell_index(driver, "theta_explorer(cams"))
    time.sleep(2)  # the widget manager restores what the file holds
    shown = wait_for(lambda: (s := image_state(driver, output))["text"].strip() and s,
                     30, "the output of the explorer's cell in the reopened notebook")
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", output)
    output.screenshot(str(SHOTS / "theta_explorer_reopened.png"))
    assert MODEL_NOT_FOUND not in shown["text"], f"{shown['text']!r}; saved models: {models}"
    shown = wait_for(lambda: (s := image_state(driver, output))["sliders"] and any(s["widths"])
                     and s, 30, "the theta explorer of the reopened notebook")
    assert shown["html"] and shown["html"][0].startswith("theta = "), shown
    assert {"FloatSliderModel", "ImageModel", "HTMLModel"} <= set(models), models


def test_chapter03_mask_inspector_follows_the_image_picker(driver, lab):
    name = "03_confseg.ipynb"
    open_notebook(driver, lab, name)
    run_all(driver, name)
    output = cell_output(driver, cell_index(driver, "mask_inspector(cams"))
    before = wait_for(lambda: (s := image_state(driver, output))["html"] and any(s["widths"])
                      and s, 30, "the mask inspector")
    pickers = output.find_elements(By.CSS_SELECTOR, ".widget-dropdown select")
    assert len(pickers) == 2, f"{len(pickers)} dropdowns in the mask inspector"
    Select(pickers[0]).select_by_index(1)
    after = wait_for(lambda: (s := image_state(driver, output))["html"] != before["html"]
                     and s["srcs"] != before["srcs"] and any(s["widths"]) and s,
                     30, "mask inspector text and image after picking image 1")
    assert "(ground truth)" in after["html"][0], after["html"]
