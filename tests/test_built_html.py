"""The rendered book reads well: checks over the HTML of a built book.

`make test` builds the smoke book into ``_build/smoke-html/html`` after the unit tests, then
runs this file on it (``pytest tests/test_built_html.py``). Another folder:
``CSOA_BUILT_HTML=path/to/html pytest tests/test_built_html.py``. Without a built book (a
plain ``pytest`` before any build) every test here is skipped.

Checked on every page of the book: no absolute path of the building machine in the visible
text; no empty output area (an ipywidget has no state in the static book); no line of printed
output longer than `MAX_OUTPUT_LINE` characters; every internal link leads to an existing
file (and anchor); papermill's parameter cells are hidden; the display equations carry the
paper's numbers. On the pages of `CAPTIONED_PAGES`: every figure has a caption and alt text
that is not a file name.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

import bs4
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
HTML_DIR = Path(os.environ.get("CSOA_BUILT_HTML", REPO_ROOT / "_build" / "smoke-html" / "html"))
#: Pages whose figures must be numbered, captioned figures with alt text (cell metadata
#: ``mystnb: {figure: {caption, name}, image: {alt}}``). The other chapters (04, 05) are
#: added here as they are converted.
CAPTIONED_PAGES = [
    "00_introduction",
    "01_data",
    "02_cam_baseline",
    "03_confseg",
    "04_coaug",
    "05_csoa_training",
    "06_table1_modules",
    "07_table2_feature_block",
    "08_table3_theta",
    "09_table4_cub",
    "10_table5_ilsvrc",
    "11_table6_gt_known",
    "12_beyond_the_paper",
    "13_paper_preset",
    "14_wsol_methods",
    "15_results",
    "16_conclusion",
    "notation",
    "bibliography",
]
#: Longest line of printed output that fits the text column (see book/_static/book.css).
MAX_OUTPUT_LINE = 90
#: Absolute paths of a building machine, as they would appear in printed output.
MACHINE_PATH = re.compile(r"(?<![\w.~])/(?:tmp|home|root|work|Users|private)/")
PAGES = sorted(HTML_DIR.glob("book/*.html")) if HTML_DIR.is_dir() else []
#: Checks that chapters not yet converted by their owner still fail, page by page: expected
#: failures (strict: once a page passes, remove it here). Printed paths: use
#: `csoa_nb.book.display.display_path`; long printed lines: `printable`.
PENDING: dict[str, set[str]] = {
    "test_no_machine_paths": set(),
    "test_output_lines_fit_the_column": set(),
}

pytestmark = pytest.mark.skipif(
    not PAGES, reason=f"no built book in {HTML_DIR} (make test builds it)"
)


@cache
def soup(page: Path) -> bs4.BeautifulSoup:
    return bs4.BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")


def article(page: Path) -> bs4.element.Tag:
    """The page's own content, without the theme's navigation and scripts."""
    main = soup(page).find("article") or soup(page).find("main") or soup(page)
    return main


def visible_text(tag: bs4.element.Tag) -> str:
    for hidden in tag.find_all(["script", "style"]):
        hidden.extract()
    return tag.get_text(" ")


def page_id(page: Path) -> str:
    return page.stem


@pytest.fixture(params=PAGES, ids=page_id)
def page(request) -> Path:
    if request.param.stem in PENDING.get(request.function.__name__, ()):
        request.applymarker(pytest.mark.xfail(
            strict=True, reason="chapter not converted yet (tests/test_built_html.py PENDING)"))
    return request.param


def test_no_machine_paths(page):
    text = visible_text(bs4.BeautifulSoup(str(article(page)), "html.parser"))
    found = sorted({m.group(0) + "..." for m in MACHINE_PATH.finditer(text)})
    assert not found, f"{page.name} shows absolute paths of the building machine: {found}"


def test_no_empty_outputs(page):
    empty = []
    for output in article(page).select("div.cell_output"):
        widget = output.find("script", type="application/vnd.jupyter.widget-view+json")
        has_content = output.find(["img", "table", "pre", "svg", "figure", "p"])
        if widget is not None or (has_content is None and not output.get_text(strip=True)):
            cell = output.find_parent("div", class_="cell")
            source = cell.select_one("div.cell_input pre") if cell else None
            empty.append(source.get_text()[:60] if source else str(output)[:60])
    assert not empty, (
        f"{page.name}: output areas with nothing to see (a widget? tag the cell "
        f"remove-output and show a static figure): {empty}"
    )


def test_output_lines_fit_the_column(page):
    long = [
        line
        for pre in article(page).select("div.cell_output pre")
        for line in pre.get_text().splitlines()
        if len(line) > MAX_OUTPUT_LINE
    ]
    assert not long, (
        f"{page.name}: {len(long)} printed line(s) over {MAX_OUTPUT_LINE} characters (wrap "
        "them, e.g. csoa_nb.book.display.printable): "
        f"{[line[:60] + '...' for line in long]}"
    )


def test_parameter_cells_are_hidden(page):
    for tag in ("parameters", "injected-parameters"):
        shown = soup(page).select(f"div.cell.tag_{tag}")
        assert not shown, f"{page.name} shows the {tag} cell: tag it remove-cell"


def _anchors(page: Path) -> set[str]:
    return {tag["id"] for tag in soup(page).find_all(id=True)}


def test_internal_links_resolve(page):
    broken = []
    for link in soup(page).find_all("a", href=True):
        parts = urlsplit(link["href"])
        if parts.scheme or parts.netloc or link["href"].startswith(("mailto:", "javascript:")):
            continue
        target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            broken.append(link["href"])
        elif parts.fragment and target.suffix == ".html" and parts.fragment not in _anchors(
            target
        ):
            broken.append(link["href"])
    assert not broken, f"{page.name}: links to nothing: {sorted(set(broken))}"


def test_equations_carry_the_paper_numbers(page):
    for block in article(page).select("div.math[id^=equation-eq]"):
        number = block["id"].removeprefix("equation-eq")
        eqno = block.select_one("span.eqno")
        assert eqno is not None and eqno.get_text(strip=True).startswith(f"({number})"), (
            f"{page.name}: equation {block['id']} is numbered "
            f"{eqno.get_text(strip=True) if eqno else 'nothing'}, the paper's is ({number})"
        )


@pytest.mark.parametrize("name", CAPTIONED_PAGES)
def test_figures_are_captioned_with_alt_text(name):
    page = HTML_DIR / "book" / f"{name}.html"
    assert page.is_file(), f"{page} was not built"
    body = article(page)
    problems = []
    for img in body.select("div.cell_output img"):
        figure = img.find_parent("figure")
        caption = figure.find("figcaption") if figure else None
        if caption is None or not caption.get_text(strip=True):
            problems.append(f"{img.get('src')}: no caption (mystnb.figure.caption)")
        alt = img.get("alt", "").strip()
        if not alt or re.search(r"[\\/]|\.(png|jpe?g|svg|gif)$", alt):
            problems.append(f"{img.get('src')}: alt text {alt!r} (mystnb.image.alt)")
    for figure in body.find_all("figure"):
        if not figure.find("figcaption"):
            problems.append(f"figure {figure.get('id')} without a caption")
    assert not problems, f"{page.name}: {problems}"
