"""The browser suite (`make test-browser`): headless chromium on the built book and on `make lab`.

Not part of `make test` (pyproject.toml's ``norecursedirs`` keeps plain ``pytest`` out of this
folder); run it with ``pytest tests/browser`` after `make book`. It drives Debian's ``chromium``
through ``/usr/bin/chromedriver`` (``apt-get install chromium chromium-driver``); selenium is
given both paths, so its driver manager never looks for, or downloads, a browser. The window
is 1280 px wide. When a test that uses the browser fails, a screenshot of the page lands in
``_build/browser/<test>.png``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from browser_support import (
    CHROMEDRIVER,
    CHROMIUM,
    HEIGHT,
    REPO_ROOT,
    SHOTS,
    WIDTH,
    Lab,
    require_browser,
    start_lab,
    stop,
)


@pytest.fixture(scope="module")
def driver():
    """Headless chromium, 1280 px wide, logging the console at every level."""
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={WIDTH},{HEIGHT}", "--hide-scrollbars", "--lang=en-US"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    browser.set_page_load_timeout(60)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture(scope="session", autouse=True)
def fresh_screenshots():
    """Screenshots of an earlier run must not pass for this one's."""
    for old in SHOTS.glob("*.png"):
        old.unlink()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    browser = getattr(item, "funcargs", {}).get("driver")
    if report.when in ("setup", "call") and report.failed and browser is not None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in item.name)
        path = SHOTS / f"{name}.png"
        try:
            browser.save_screenshot(str(path))
            report.sections.append(("screenshot", str(path)))
        except Exception as err:  # a dead browser must not hide the test's own failure
            report.sections.append(("screenshot", f"none: {err}"))


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[Lab]:
    """`make lab` on copies of chapters 02 and 03 in ``_build/browser/lab``.

    The copies sit inside the project, so the chapters' relative paths (``results``, ``data``)
    resolve as in ``book/`` (`csoa_nb.base.paths.project_root` looks for ``_toc.yml`` above the
    kernel's folder); ``book/*.ipynb`` stay untouched.
    """
    root = SHOTS / "lab"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for name in ("02_cam_baseline.ipynb", "03_confseg.ipynb"):
        shutil.copy2(REPO_ROOT / "book" / name, root / name)
    lab = start_lab(root, SHOTS / "lab.log", tmp_path_factory.mktemp("lab-user"))
    try:
        yield lab
    finally:
        try:  # shuts the kernels down too
            lab.api("/api/shutdown", method="POST")
            lab.process.wait(30)
        except Exception:
            pass
        stop(lab.process)
