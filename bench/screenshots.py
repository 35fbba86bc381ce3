"""Screenshots of every page of a built book, as a reader at 1280 px sees it.

    python bench/screenshots.py _build/smoke-html/html            # every page
    python bench/screenshots.py _build/smoke-html/html --only 02_cam_baseline notation

For each page (``*.html`` except the search and index pages) headless Chromium renders the
page in a window ``--width`` pixels wide and ``--height`` tall (long enough for the longest
chapter), the empty space below the page is cropped, and the result is written to
``<out>/<page>.png`` together with tiles ``<page>-01.png``, ``<page>-02.png``, ... of at most
``--tile`` pixels each, small enough to look at one screen at a time. Default ``<out>``:
``_build/screenshots``.

Needs a ``chromium`` (or ``chromium-browser``, ``google-chrome``) executable, e.g. Debian's
``apt-get install -y chromium``; no Selenium. Not a test: it prints what it wrote.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
#: Pages that are not the book's content.
SKIPPED = {"genindex.html", "search.html", "py-modindex.html"}
#: Seconds of page time Chromium gives scripts (MathJax) before the screenshot.
SCRIPT_TIME_MS = 8000


def find_browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit(
        f"none of {', '.join(BROWSERS)} is on PATH: install one, e.g. "
        "`apt-get update && apt-get install -y chromium`"
    )


def pages(html_dir: Path, only: list[str] | None = None) -> list[Path]:
    """The content pages of a built book, in path order (``index.html`` included)."""
    found = sorted(
        p for p in html_dir.rglob("*.html")
        if p.name not in SKIPPED and not {"_static", "_sources", "_images"} & set(p.parts)
    )
    if only:
        wanted = {Path(name).stem for name in only}
        found = [p for p in found if p.stem in wanted]
        missing = wanted - {p.stem for p in found}
        if missing:
            raise SystemExit(f"no page named {sorted(missing)} under {html_dir}")
    return found


def crop_blank_bottom(image: Image.Image, margin: int = 40, gap: int = 600) -> Image.Image:
    """Cut the empty window below a page: the theme stretches the page to the window and puts
    its footer at the bottom, so the page ends where the first run of ``gap`` rows without
    content starts (content: any pixel of a row, right of the left sidebar, that is not the
    row's background)."""
    pixels = np.asarray(image.convert("L")).astype(np.int16)[:, image.width // 4:]
    busy = np.abs(pixels - np.median(pixels, axis=1, keepdims=True)).max(axis=1) > 8
    rows = np.nonzero(busy)[0]
    if rows.size == 0:
        return image
    jumps = np.nonzero(np.diff(rows) > gap)[0]
    last = int(rows[jumps[0]] if jumps.size else rows[-1])
    return image.crop((0, 0, image.width, min(last + margin, image.height)))


def screenshot(browser: str, page: Path, out: Path, width: int, height: int, tile: int
               ) -> list[Path]:
    """Render ``page`` to ``out`` (cropped) and its tiles; returns the files written."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "page.png"
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--disable-dev-shm-usage", f"--virtual-time-budget={SCRIPT_TIME_MS}",
               f"--window-size={width},{height}", f"--screenshot={raw}", page.as_uri()]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if not raw.is_file():
            raise SystemExit(f"chromium wrote no screenshot of {page}:\n{result.stderr[-2000:]}")
        image = crop_blank_bottom(Image.open(raw))
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    written = [out]
    for k, top in enumerate(range(0, image.height, tile), start=1):
        part = out.with_name(f"{out.stem}-{k:02d}.png")
        image.crop((0, top, image.width, min(top + tile, image.height))).save(part)
        written.append(part)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html_dir", type=Path, help="a built book, e.g. _build/smoke-html/html")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "_build" / "screenshots")
    parser.add_argument("--only", nargs="+", metavar="PAGE", help="page stems, e.g. notation")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=16000,
                        help="window height: longer pages are cut here (default 16000)")
    parser.add_argument("--tile", type=int, default=1600, help="tile height in pixels")
    args = parser.parse_args(argv)
    if not (args.html_dir / "index.html").is_file():
        raise SystemExit(f"{args.html_dir} has no index.html: give the folder of a built book, "
                         "e.g. _build/smoke-html/html (make test builds it)")
    browser = find_browser()
    html_dir = args.html_dir.resolve()
    for page in pages(html_dir, args.only):
        start = time.perf_counter()
        rel = page.relative_to(html_dir).with_suffix(".png")
        written = screenshot(browser, page, args.out / rel, args.width, args.height, args.tile)
        print(f"{rel.with_suffix('.html')}: {written[0]} and {len(written) - 1} tile(s), "
              f"{time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
