"""Helpers of the browser suite: where things are, `make lab` started as a reader would, and
what a page shows cut off at the right of its text column."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

#: The checkout this suite belongs to (not csoa_nb's: a shared environment may have been
#: installed from another checkout).
REPO_ROOT = Path(__file__).resolve().parents[2]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WIDTH, HEIGHT = 1280, 1000
#: The book's HTML, as `make book` leaves it (CSOA_BOOK_HTML names another build to check).
HTML = Path(os.environ.get("CSOA_BOOK_HTML") or REPO_ROOT / "_build" / "html").resolve()
#: Screenshots (failures, and the theta explorer for README.md) and Lab's working copies.
SHOTS = REPO_ROOT / "_build" / "browser"
#: Seconds `make lab` may take to answer.
LAB_START_S = 120


def require_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not found: the browser tests drive Debian's chromium; install "
            "it with `apt-get install -y chromium chromium-driver` (.ci/run does)",
            pytrace=False,
        )


# ---------------------------------------------------------------------------- make lab
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    """A running `make lab` on a folder of working copies."""

    url: str
    token: str
    root: Path
    process: subprocess.Popen
    log: Path

    def api(self, path: str, method: str = "GET") -> object:
        request = urllib.request.Request(
            f"{self.url}{path}", method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-chars:]


def stop(process: subprocess.Popen) -> None:
    """End the process group of `make lab` (we started it in its own session)."""
    if process.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def start_lab(root: Path, log: Path, user_dir: Path) -> Lab:
    """`make lab` with LAB_DIR=root, on a free localhost port, with a fresh token.

    The command is the Makefile's recipe itself: ``make lab`` with ``LAB_DIR`` and ``LAB_ARGS``
    (port, token), ``VENV`` set to this interpreter's environment, and its install stamp taken
    as up to date (``-o``). ``MPLBACKEND=Agg`` stays in the environment, as under make. Lab's
    user settings and workspaces live in `user_dir` (a user with no settings of their own, so
    that only the project's defaults are under test).
    """
    if shutil.which("make") is None:
        pytest.fail("GNU make is not installed", pytrace=False)
    port, token = free_port(), secrets.token_hex(16)
    venv = Path(sys.prefix)
    # PYTHONPATH: the kernels import this checkout's csoa_nb even where the environment was
    # installed from another checkout (make lab itself runs from the one it installed)
    python_path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": python_path,
           "JUPYTERLAB_SETTINGS_DIR": str(user_dir / "user-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(user_dir / "workspaces")}
    lab_args = (f"--ip=127.0.0.1 --port={port} --ServerApp.port_retries=0 "
                f"--IdentityProvider.token={token}")
    command = ["make", "-s", "-C", str(REPO_ROOT), "lab", f"VENV={venv}", "-o", f"{venv}/.stamp",
               f"LAB_DIR={root.relative_to(REPO_ROOT)}", f"LAB_ARGS={lab_args}"]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    lab = Lab(f"http://127.0.0.1:{port}", token, root, process, log)
    deadline = time.monotonic() + LAB_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"make lab exited with {process.returncode}:\n{lab.log_tail()}",
                        pytrace=False)
        try:
            lab.api("/api/status")
            return lab
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    stop(process)
    pytest.fail(f"make lab did not answer within {LAB_START_S} s:\n{lab.log_tail()}",
                pytrace=False)




# ---------------------------------------------------------------------------- cut-off content
#: Display equations, table captions, tables and code blocks of a page's text column, each
#: with the width its content needs. Equations (with their number) and captions are read in
#: one piece, so they must fit: the theme's scroll box on an equation shows its left part
#: beside the number and hides the rest. A table or a code block may instead sit in a box
#: that scrolls horizontally (the table's wrapper, the ``pre`` itself) within the column.
_CUT_OFF_JS = """
const article = document.querySelector('article.bd-article');
if (!article) return null;
const style = getComputedStyle(article), box = article.getBoundingClientRect();
const column = {left: box.left + article.clientLeft + parseFloat(style.paddingLeft),
                right: box.left + article.clientLeft + article.clientWidth
                       - parseFloat(style.paddingRight)};
const overflowX = e => getComputedStyle(e).overflowX;
const shown = e => e.getClientRects().length > 0;
const text = e => e.textContent.replace(/\\s+/g, ' ').trim();
const tex = new Map();  // MathJax's source of each typeset equation, where it has one
try {
  for (const item of MathJax.startup.document.math) tex.set(item.typesetRoot, item.math);
} catch (err) {}
// the boxes between `from` (included) and the article that clip what overflows them
const clippers = from => {
  const found = [];
  for (let e = from; e && e !== article; e = e.parentElement)
    if (overflowX(e) !== 'visible') found.push(e);
  return found;
};
const found = [];
const report = (kind, element, need, why) => {
  if (!found.length) element.scrollIntoView({block: 'center'});  // for a failure's screenshot
  found.push({kind, need: Math.round(need), column: Math.round(column.right - column.left),
              why, text: (tex.get(element) || text(element)).trim().slice(0, 60)});
};
const mustFit = (kind, element, need, right, from) => {
  const limit = Math.min(column.right,
                         ...clippers(from).map(c => c.getBoundingClientRect().right));
  if (right > limit + 1) report(kind, element, need,
                                right > column.right + 1 ? 'wider than the column'
                                                         : 'cut off by its box');
};
for (const math of document.querySelectorAll('mjx-container[display="true"]')) {
  if (!shown(math)) continue;
  const block = math.parentElement, left = block.getBoundingClientRect().left;
  // the equation's own width plus what its block gives the number (eqno and gap)
  const need = math.scrollWidth + block.clientWidth - math.clientWidth;
  const number = block.querySelector(':scope > .eqno');  // "(12)" and its "#" link
  const label = number && [...number.childNodes].filter(n => n.nodeType === Node.TEXT_NODE)
    .map(n => n.textContent).join('').trim();
  mustFit(label ? `equation ${label}` : 'equation', math, need, left + need, block);
}
for (const caption of document.querySelectorAll('article table > caption')) {
  if (!shown(caption)) continue;
  const range = document.createRange();
  range.selectNodeContents(caption);
  // its words must show; it is as wide as its table, and wraps at that width
  mustFit('table caption', caption, caption.getBoundingClientRect().width,
          range.getBoundingClientRect().right, caption);
}
const blocks = [...document.querySelectorAll('article table')].map(e => ['table', e])
  .concat([...document.querySelectorAll('article div.highlight > pre')]
          .filter(e => !e.closest('.cell_output')).map(e => ['code block', e]));
for (const [kind, element] of blocks) {
  if (!shown(element)) continue;
  const left = element.getBoundingClientRect().left, need = element.scrollWidth;
  const clip = clippers(element)[0], clipBox = clip && clip.getBoundingClientRect();
  const limit = clip ? Math.min(column.right, clipBox.right) : column.right;
  if (left + need <= limit + 1) continue;
  if (!clip) report(kind, element, need, 'spills past the column');
  else if (!['auto', 'scroll'].includes(overflowX(clip)))
    report(kind, element, need,
           `clipped by ${clip.tagName.toLowerCase()} (overflow-x: ${overflowX(clip)})`);
  else if (clipBox.right > column.right + 1)
    report(kind, element, need, 'its scroll box is wider than the column');
}
return found;
"""


def cut_off_content(driver) -> list[str]:
    """What the open page shows cut off at the right of its text column (the content box of
    ``article.bd-article``): display equations with their number and table captions wider
    than the column or their box, tables and code blocks (not outputs: see the chapter test)
    wider than the column and not in a box that scrolls horizontally within it. Each names
    the page, the kind, the widths and the first characters (an equation's TeX)."""
    page = Path(unquote(urlparse(driver.current_url).path)).name
    found = driver.execute_script(_CUT_OFF_JS)
    if found is None:
        return [f"{page}: no text column (article.bd-article) to measure"]
    return [f"{page}: {f['kind']} {f['need']} px wide in the {f['column']} px column, "
            f"{f['why']}: \"{f['text']}\"" for f in found]


# ---------------------------------------------------------------------------- page length
#: A reader's screen, 1280 x 900 px, and the most of them a chapter may fill before its
#: details have to fold into collapsed blocks: "about eight screens", read as at most nine.
SCREEN_PX = 900
MAX_SCREENS = 9


def too_long(driver) -> list[str]:
    """The open page, if it is longer than `MAX_SCREENS` screens of `SCREEN_PX` as it first
    opens (folded blocks closed): its length in screens and its tallest sections, which is
    where folding would help."""
    found = driver.execute_script("""
        const height = document.documentElement.scrollHeight;
        const sections = [...document.querySelectorAll('article.bd-article section > h2')]
            .map(h => [Math.round(h.parentElement.getBoundingClientRect().height),
                       h.innerText.replace(/\\s+/g, ' ').replace(/#$/, '').trim()])
            .sort((a, b) => b[0] - a[0]).slice(0, 3);
        return [height, sections];""")
    height, sections = found
    if height <= MAX_SCREENS * SCREEN_PX:
        return []
    name = Path(unquote(urlparse(driver.current_url).path)).name
    tallest = ", ".join(f'"{title}" {px / SCREEN_PX:.1f}' for px, title in sections)
    return [f"{name}: {height / SCREEN_PX:.1f} screens of {SCREEN_PX} px, more than "
            f"{MAX_SCREENS:g}: fold details into dropdowns or hide-output cells (tallest "
            f"sections, in screens: {tallest})"]
