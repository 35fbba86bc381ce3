"""The built book (`make book`, ``_build/html``) in headless chromium, 1280 px wide.

Each chapter page is opened as a reader opens it (``file://``, no server: the book reads
offline) and checked for: no console error, equations typeset by MathJax, every image loaded,
no text output wider than its column, no display equation, table caption, table or code block
cut off at the column's right (`browser_support.cut_off_content`, itself tested here on small
pages), no page longer than about eight screens (`browser_support.too_long`), and sidebar /
in-text links that lead to pages (and anchors) that exist.
"""

from __future__ import annotations

import re
import time
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from browser_support import HTML, MAX_SCREENS, REPO_ROOT, SCREEN_PX, cut_off_content, too_long

from csoa_nb.book.runbook import TOC_FILE, notebooks_from_toc

#: Seconds MathJax may take to typeset a page.
MATH_S = 30
CHAPTERS = [nb.with_suffix(".html") for nb in notebooks_from_toc(REPO_ROOT / TOC_FILE)]


@pytest.fixture(scope="module")
def html_root() -> Path:
    if not (HTML / "index.html").is_file():
        pytest.fail(
            f"{HTML / 'index.html'} not found: build the book first with `make book` "
            "(make test-browser checks its HTML)", pytrace=False,
        )
    return HTML


@cache
def ids_of(page: Path) -> frozenset[str]:
    """The ``id`` attributes of an HTML file (the anchors a link may point to)."""
    return frozenset(re.findall(r'\sid="([^"]+)"', page.read_text(encoding="utf-8")))


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def wait_for_math(driver) -> dict:
    """Wait for MathJax to finish the page; counts of math elements, typeset and failed."""
    deadline = time.monotonic() + MATH_S
    while True:
        state = driver.execute_script("""
            const math = [...document.querySelectorAll('.math')];
            return {
              math: math.length,
              mathjax: !!(window.MathJax && MathJax.startup && MathJax.startup.document),
              untypeset: math.filter(e => !e.querySelector('mjx-container'))
                             .map(e => e.textContent.slice(0, 60)),
              errors: [...document.querySelectorAll('mjx-merror, [data-mjx-error]')]
                          .map(e => e.getAttribute('data-mjx-error') || e.textContent),
            };""")
        if not state["math"] or not state["untypeset"] or time.monotonic() > deadline:
            return state
        time.sleep(0.25)


def broken_images(driver) -> list[str]:
    driver.execute_script(
        "return Promise.all([...document.images].map(i => i.decode().catch(() => null)));")
    return driver.execute_script("""
        const bad = [...document.images].filter(i => !i.complete || i.naturalWidth === 0);
        if (bad.length) bad[0].scrollIntoView({block: 'center'});
        return bad.map(i => i.getAttribute('src'));""")


def overflowing_outputs(driver) -> list[str]:
    """Text outputs (``pre`` in ``.cell_output``) wider than their box or their column."""
    return driver.execute_script("""
        const column = document.querySelector('article.bd-article');
        const right = column.getBoundingClientRect().right;
        const bad = [...document.querySelectorAll('.cell_output pre')].filter(p =>
            p.scrollWidth > p.clientWidth + 1 || p.getBoundingClientRect().right > right + 1);
        if (bad.length) bad[0].scrollIntoView({block: 'center'});
        const longest = p => p.textContent.split('\\n')
            .reduce((a, b) => b.length > a.length ? b : a).slice(0, 100);
        return bad.map(p => `${p.scrollWidth} px in ${p.clientWidth} px: ${longest(p)}`);""")


def bad_links(driver, html_root: Path) -> list[str]:
    """Internal links of the sidebar and the text whose page, or anchor, does not exist."""
    links = driver.execute_script("""
        const pick = (where, selector) => [...document.querySelectorAll(selector)]
            .map(a => ({where, href: a.href, text: a.textContent.trim().slice(0, 50)}));
        return pick('sidebar', 'nav.bd-docs-nav a[href]')
            .concat(pick('text', 'article.bd-article a[href]'));""")
    assert any(link["where"] == "sidebar" for link in links), "no sidebar links found"
    problems = []
    for link in links:
        url = urlparse(link["href"])
        if url.scheme != "file":
            continue
        target = Path(unquote(url.path))
        label = f"{link['where']} link {link['text']!r} -> {link['href']}"
        if html_root.resolve() not in target.resolve().parents or not target.is_file():
            problems.append(f"{label}: no such page in {html_root}")
        elif url.fragment and unquote(url.fragment) not in ids_of(target):
            problems.append(f"{label}: {target.name} has no id {url.fragment!r}")
    return problems


def test_index_leads_to_the_first_chapter(html_root, driver):
    driver.get((html_root / "index.html").as_uri())
    first = (html_root / CHAPTERS[0]).as_uri()
    deadline = time.monotonic() + 10
    while driver.current_url != first and time.monotonic() < deadline:
        time.sleep(0.2)
    assert driver.current_url == first


@pytest.mark.parametrize("page", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_page(html_root, driver, page):
    path = html_root / page
    assert path.is_file(), f"{path} missing: the book build left out a chapter of {TOC_FILE}"
    if driver.current_url.startswith("file:"):  # every page is a reader's first visit
        driver.execute_script("localStorage.clear(); sessionStorage.clear();")
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(path.as_uri())
    assert driver.execute_script("return window.innerWidth") == 1280
    problems = []
    math = wait_for_math(driver)
    if math["math"] and not math["mathjax"]:
        problems.append("MathJax did not start: the equations are raw TeX")
    elif math["untypeset"]:
        problems.append(f"{len(math['untypeset'])} of {math['math']} equations not typeset by "
                        f"MathJax within {MATH_S} s, e.g. {math['untypeset'][:2]}")
    problems += [f"MathJax error: {e}" for e in math["errors"]]
    problems += [f"image not loaded: {src}" for src in broken_images(driver)]
    problems += [f"text output overflows: {o}" for o in overflowing_outputs(driver)]
    problems += cut_off_content(driver)
    problems += too_long(driver)
    problems += bad_links(driver, html_root)
    problems += [f"console error: {e}" for e in console_errors(driver)]
    assert not problems, f"{page}:\n" + "\n".join(problems)


# ---------------------------------------------------------------------------- the check itself
#: A page laid out as the book's theme lays one out: a 600 px text column (article.bd-article
#: with 30 px padding), display math as a flex row of the number and MathJax's container
#: (the theme's div.math clips, mjx-container scrolls), tables in a scrolling wrapper.
PAGE = """<!DOCTYPE html><html><head><style>
  body {{ margin: 0; font: 16px sans-serif; }}
  article.bd-article {{ width: 600px; padding: 0 30px; margin-left: 100px; }}
  div.math {{ display: flex; flex-direction: row-reverse; gap: 8px; overflow: hidden; }}
  mjx-container {{ display: block; flex-grow: 1; overflow: auto; text-align: center; }}
  table {{ border-spacing: 0; }} td {{ padding: 0; }} .wrapper {{ overflow-x: auto; }}
  pre {{ overflow-x: auto; margin: 0; }}
  .wide {{ display: inline-block; }}
</style></head><body><article class="bd-article">{body}</article></body></html>"""


def open_page(driver, tmp_path: Path, body: str) -> None:
    page = tmp_path / "page.html"
    page.write_text(PAGE.format(body=body), encoding="utf-8")
    driver.get(page.as_uri())


def equation(width: int) -> str:
    return (f'<div class="math"><span class="eqno">(12)</span><mjx-container display="true">'
            f'<span class="wide" style="width: {width}px">L_D^same = sum</span>'
            '</mjx-container></div>')


def table(caption: str, cell_width: int, wrapper: str = "wrapper") -> str:
    return (f'<div class="{wrapper}"><table><caption>{caption}</caption><tr><td>'
            f'<span class="wide" style="width: {cell_width}px">Inception_V3</span></td></tr>'
            '</table></div>')


def test_cut_off_content_names_a_wide_equation_with_its_number(driver, tmp_path):
    open_page(driver, tmp_path, equation(560) + equation(800))
    found = cut_off_content(driver)
    # the first fits with its number (560 + 8 px gap + the number < 600); the second does not
    assert len(found) == 1, found
    assert found[0].startswith("page.html: equation (12) ")
    assert 'in the 600 px column, wider than the column: "L_D^same = sum"' in found[0]


def test_cut_off_content_names_a_wide_table_and_a_cut_caption(driver, tmp_path):
    long_caption = "Table 13.2 The settings of the paper preset that differ " * 2
    open_page(driver, tmp_path, table("Table 1.1 Fits.", 500)
              + table("Table 1.2 Short.", 900)  # scrolls in its wrapper, caption visible
              + table(long_caption, 900)        # scrolls, but the caption is cut
              + table("Table 1.3 Spills.", 700, wrapper="plain"))  # nothing scrolls
    caption, spilled = cut_off_content(driver)
    assert caption == ("page.html: table caption 900 px wide in the 600 px column, wider than "
                       'the column: "Table 13.2 The settings of the paper preset that differ '
                       'Tabl"')
    assert spilled == ("page.html: table 700 px wide in the 600 px column, spills past the "
                       'column: "Table 1.3 Spills.Inception_V3"')


def test_cut_off_content_lets_a_code_block_scroll_but_not_be_clipped(driver, tmp_path):
    line = "x = " + "1 + " * 80
    open_page(driver, tmp_path,
              f'<div class="highlight"><pre>{line}</pre></div>'  # scrolls: fine
              f'<div class="highlight" style="overflow: hidden">'
              f'<pre style="overflow: visible">clipped = {line}</pre></div>')
    found = cut_off_content(driver)
    assert len(found) == 1, found
    assert found[0].startswith("page.html: code block ")
    assert found[0].endswith(f'clipped by div (overflow-x: hidden): "clipped = {line[:50]}"')


def test_too_long_names_a_long_page_and_its_tallest_section(driver, tmp_path):
    def sections(*heights: int) -> str:
        return "".join(f'<section><h2>Part {i}</h2><div style="height: {h}px"></div></section>'
                       for i, h in enumerate(heights, 1))
    open_page(driver, tmp_path, sections(2000, 3000))  # about 5.6 screens: fine
    assert too_long(driver) == []
    open_page(driver, tmp_path, sections(2000, 6000, 1000))
    (found,) = too_long(driver)
    assert found.startswith(f"page.html: 10.2 screens of {SCREEN_PX} px, more than {MAX_SCREENS:g}")
    assert found.endswith('(tallest sections, in screens: "Part 2" 6.7, "Part 1" 2.3, '
                          '"Part 3" 1.2)')
