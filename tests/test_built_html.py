"""The rendered book reads well: checks over the HTML of a built book.

`make test` builds the smoke book into ``_build/smoke-html/html`` after the unit tests, then
runs this file on it (``pytest tests/test_built_html.py``). Another folder:
``CSOA_BUILT_HTML=path/to/html pytest tests/test_built_html.py``. Without a built book (a
plain ``pytest`` before any build) every test here is skipped.

Checked on every page of the book: no absolute path of the building machine in the visible
text; no empty output area (an ipywidget has no state in the static book); every widget cell
is followed by a picture of its states; no line of printed output longer than
`MAX_OUTPUT_LINE` characters; every internal link leads to an existing file (and anchor);
papermill's parameter cells are hidden; the display equations carry the paper's numbers; every
labelled exercise has a solution; every citation resolves; every table a notebook names is
shown on its page. Across the pages: one row − CAM comparison (row, MaxBoxAccV2, PxAP or a
top-1 error at a written θ, regime) is printed with one number everywhere
(`conflicting_numbers`). On the pages of `CAPTIONED_PAGES`:
every figure has a caption and alt text that is not a file name.

The checks that read a page's structure are plain functions of its HTML
(`widgets_without_picture`, `exercises_without_solution`, `unresolved_citations`), each
tested on small pages made here, good and bad, so those tests run without a build.
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
    "17_real_photos",
    "notation",
    "bibliography",
]
#: Longest line of printed output that fits the text column (see book/_static/book.css).
MAX_OUTPUT_LINE = 90
#: Absolute paths of a building machine, as they would appear in printed output.
MACHINE_PATH = re.compile(r"(?<![\w.~])/(?:tmp|home|root|work|Users|private)/")
PAGES = sorted(HTML_DIR.glob("book/*.html")) if HTML_DIR.is_dir() else []
#: Pages with an ipywidget: at least one cell of each must be found as a widget cell.
WIDGET_PAGES = ["02_cam_baseline", "03_confseg"]
#: A widget's view in a notebook's output (ipywidgets' MIME type).
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
#: The markup of a rendered widget (ipywidgets' HTML manager).
WIDGET_CLASS = re.compile(r"^jupyter-widgets")
#: The id sphinx-exercise gives an exercise without a label (``<docname>-exercise-<n>``).
UNLABELLED_EXERCISE = re.compile(r"/[^/]*-exercise-\d+$")
#: What an unresolved reference leaves in the text: a marker, or a role left as text.
UNRESOLVED_MARKS = ("[?]", "??")
CITE_ROLE = re.compile(r"\{cite(?::\w+)?\}|:cite(?::\w+)?:")
#: Checks that chapters not yet converted by their owner still fail, page by page: expected
#: failures (strict: once a page passes, remove it here). Printed paths: use
#: `csoa_nb.book.display.display_path`; long printed lines: `printable`.
PENDING: dict[str, set[str]] = {
    "test_no_machine_paths": set(),
    "test_output_lines_fit_the_column": set(),
}

needs_build = pytest.mark.skipif(
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


@needs_build
def test_no_machine_paths(page):
    text = visible_text(bs4.BeautifulSoup(str(article(page)), "html.parser"))
    found = sorted({m.group(0) + "..." for m in MACHINE_PATH.finditer(text)})
    assert not found, f"{page.name} shows absolute paths of the building machine: {found}"


@needs_build
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


@needs_build
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


@needs_build
def test_parameter_cells_are_hidden(page):
    for tag in ("parameters", "injected-parameters"):
        shown = soup(page).select(f"div.cell.tag_{tag}")
        assert not shown, f"{page.name} shows the {tag} cell: tag it remove-cell"


def _anchors(page: Path) -> set[str]:
    return {tag["id"] for tag in soup(page).find_all(id=True)}


@needs_build
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


@needs_build
def test_equations_carry_the_paper_numbers(page):
    for block in article(page).select("div.math[id^=equation-eq]"):
        number = block["id"].removeprefix("equation-eq")
        eqno = block.select_one("span.eqno")
        assert eqno is not None and eqno.get_text(strip=True).startswith(f"({number})"), (
            f"{page.name}: equation {block['id']} is numbered "
            f"{eqno.get_text(strip=True) if eqno else 'nothing'}, the paper's is ({number})"
        )


@needs_build
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


# ---------------------------------------------------------------------------- page structure
def _is_widget_markup(tag: bs4.element.Tag) -> bool:
    if tag.name == "script":
        return tag.get("type") == WIDGET_MIME
    return any(WIDGET_CLASS.match(name) for name in tag.get("class") or [])


def is_widget_cell(cell: bs4.element.Tag) -> bool:
    """A notebook cell that shows an ipywidget: tagged ``widget`` in the notebook (its output,
    the live widget, is removed: it has no state in the static book) or with a widget's view
    or markup in its output."""
    return "tag_widget" in (cell.get("class") or []) or any(
        _is_widget_markup(tag) for tag in cell.find_all(True)
    )


def _picture_after_widget(cell: bs4.element.Tag) -> bool:
    """An <img> in the cell's output after the widget's own markup."""
    seen_widget = False
    for tag in cell.find_all(True):
        seen_widget = seen_widget or _is_widget_markup(tag)
        if seen_widget and tag.name == "img" and tag.find_parent("div", class_="cell_output"):
            return True
    return False


def widgets_without_picture(body: bs4.element.Tag) -> list[str]:
    """The widget cells of a page that a reader of the HTML sees no picture for: neither an
    <img> after the widget in the cell's own output nor one in the output of the next cell
    (the element right after it: no prose between). Each is named by its code's first line."""
    missing = []
    for cell in body.select("div.cell"):
        if not is_widget_cell(cell) or _picture_after_widget(cell):
            continue
        following = cell.find_next_sibling()
        if (following is not None and "cell" in (following.get("class") or [])
                and following.select_one("div.cell_output img") is not None):
            continue
        source = cell.select_one("div.cell_input pre")
        missing.append(source.get_text().strip().splitlines()[0] if source else str(cell)[:60])
    return missing


def exercise_labels(body: bs4.element.Tag) -> set[str]:
    """The labels of a page's exercises (sphinx-exercise's ``exercise`` admonitions; one
    without a label has an id made from the page's name and is left out)."""
    return {div["id"] for div in body.select("div.exercise[id]")
            if not UNLABELLED_EXERCISE.search(div["id"])}


def solution_targets(body: bs4.element.Tag, page_name: str) -> set[tuple[str, str]]:
    """The exercises a page's solutions refer to, as (page name, label): the link in each
    ``solution`` admonition's title ("Solution to Exercise 2.1")."""
    targets = set()
    for solution in body.select("div.solution"):
        title = solution.select_one(".admonition-title")
        for link in title.find_all("a", href=True) if title else []:
            parts = urlsplit(link["href"])
            page = Path(unquote(parts.path)).stem if parts.path else page_name
            targets.add((page, parts.fragment))
    return targets


def exercises_without_solution(bodies: dict[str, bs4.element.Tag]) -> list[str]:
    """``page#label`` of every labelled exercise of `bodies` (page name -> content) that no
    solution of any of the pages refers to."""
    answered = set().union(*(solution_targets(body, name) for name, body in bodies.items()))
    return sorted(f"{name}#{label}" for name, body in bodies.items()
                  for label in exercise_labels(body) if (name, label) not in answered)


def prose_text(body: bs4.element.Tag) -> str:
    """The page's text outside code, scripts and styles (code may quote a role or a "??")."""
    return " ".join(text for text in body.find_all(string=True)
                    if not text.find_parent(["pre", "code", "script", "style"]))


def unresolved_citations(body: bs4.element.Tag) -> list[str]:
    """What shows that a citation did not resolve: a citation (sphinxcontrib-bibtex's
    ``bibtex-citation``) that links to no reference or shows a "?", a marker of an unresolved
    reference ("[?]", "??") or a ``cite`` role left as text."""
    problems = []
    for cite in body.select("span.bibtex-citation"):
        text = cite.get_text(strip=True)
        links = [a for a in cite.find_all("a", href=True) if urlsplit(a["href"]).fragment]
        if not links or "?" in text:
            problems.append(f"citation {text!r} links to no reference")
    text = prose_text(body)
    problems += [f"{mark!r} in the text" for mark in UNRESOLVED_MARKS if mark in text]
    problems += [f"{match.group(0)!r} left as text" for match in CITE_ROLE.finditer(text)]
    return problems


@cache
def all_bodies() -> dict[str, bs4.element.Tag]:
    return {page.stem: article(page) for page in PAGES}


@needs_build
def test_widgets_are_followed_by_a_picture(page):
    missing = widgets_without_picture(article(page))
    assert not missing, (
        f"{page.name}: widget cells without a picture below them (show its states with a "
        f"figure in the next cell, e.g. widgets.theta_states): {missing}"
    )


@needs_build
@pytest.mark.parametrize("name", WIDGET_PAGES)
def test_widget_cells_are_found(name):
    """The widget check sees the book's widgets (their cells are tagged ``widget``)."""
    body = article(HTML_DIR / "book" / f"{name}.html")
    assert any(is_widget_cell(cell) for cell in body.select("div.cell")), (
        f"{name}: no widget cell: tag the widget's cell 'widget' (and 'remove-output')"
    )


@needs_build
def test_every_exercise_has_a_solution(page):
    missing = [m for m in exercises_without_solution(all_bodies())
               if m.startswith(f"{page.stem}#")]
    assert not missing, f"{page.name}: exercises without a solution: {missing}"


@needs_build
def test_citations_resolve(page):
    problems = unresolved_citations(article(page))
    assert not problems, f"{page.name}: unresolved citations: {problems}"


# ------------------------------------------------------------------ the checks, on made pages
def body_of(html: str) -> bs4.element.Tag:
    return bs4.BeautifulSoup(f"<article>{html}</article>", "html.parser").article


def cell(source: str, output: str = "", tags: str = "") -> str:
    """A notebook cell as myst-nb renders it."""
    classes = " ".join(["cell"] + [f"tag_{tag}" for tag in tags.split()])
    shown = f'<div class="cell_output docutils container">{output}</div>' if output else ""
    return (f'<div class="{classes} docutils container"><div class="cell_input docutils '
            f'container"><pre>{source}</pre></div>{shown}</div>')


PICTURE = '<figure><img alt="states" src="../_images/a.png"/><figcaption>x</figcaption></figure>'
VIEW = f'<script type="{WIDGET_MIME}">{{"model_id": "1"}}</script>'


def test_widget_check_wants_a_picture_right_after_the_widget():
    tagged = cell("explorer = widgets.theta_explorer(cams)", tags="remove-output widget")
    picture = cell("fig = widgets.theta_states(cams)", PICTURE)
    assert widgets_without_picture(body_of(tagged + picture)) == []
    assert widgets_without_picture(body_of(cell("w", VIEW + PICTURE))) == []  # in its cell
    # bad pages: no picture, prose between, a picture only before the widget, only a print
    assert widgets_without_picture(body_of(tagged)) == ["explorer = widgets.theta_explorer(cams)"]
    assert len(widgets_without_picture(body_of(tagged + "<p>prose</p>" + picture))) == 1
    assert len(widgets_without_picture(body_of(cell("w", PICTURE + VIEW)))) == 1
    printed = cell("print(explorer.box)", "<pre>image 0, theta 0.30: box [...]</pre>")
    assert len(widgets_without_picture(body_of(cell("w", VIEW) + printed))) == 1
    assert len(widgets_without_picture(body_of(
        cell("w", '<div class="jupyter-widgets widget-vbox"></div>')))) == 1
    assert widgets_without_picture(body_of(cell("x = 1", "<pre>1</pre>") + picture)) == []


EXERCISE = ('<div class="exercise admonition" id="{label}"><p class="admonition-title">'
            'Exercise 2.1</p></div>')
SOLUTION = ('<div class="solution dropdown admonition" id="book/02-solution-1">'
            '<p class="admonition-title">Solution to<a class="reference internal" '
            'href="{href}"> Exercise 2.1</a></p></div>')


def test_exercise_check_wants_a_solution_referring_to_it():
    exercise = EXERCISE.format(label="ex-02-theta")
    good = body_of(exercise + SOLUTION.format(href="#ex-02-theta"))
    assert exercises_without_solution({"02": good}) == []
    elsewhere = body_of(SOLUTION.format(href="02.html#ex-02-theta"))
    assert exercises_without_solution({"02": body_of(exercise), "sol": elsewhere}) == []
    # bad pages: no solution, a solution to another exercise, one on another page's label
    assert exercises_without_solution({"02": body_of(exercise)}) == ["02#ex-02-theta"]
    other = body_of(exercise + SOLUTION.format(href="#ex-02-eq1"))
    assert exercises_without_solution({"02": other}) == ["02#ex-02-theta"]
    wrong_page = body_of(SOLUTION.format(href="03.html#ex-02-theta"))
    assert exercises_without_solution({"02": body_of(exercise), "sol": wrong_page}) == [
        "02#ex-02-theta"]
    unlabelled = EXERCISE.format(label="book/02_cam_baseline-exercise-1")
    assert exercises_without_solution({"02": body_of(unlabelled)}) == []


CITATION = ('<span class="bibtex-citation" id="id1">[<a class="reference internal" '
            'href="bibliography.html#id4" title="Zhou et al.">ZKL+16</a>]</span>')


def test_citation_check_finds_what_an_unresolved_citation_leaves():
    assert unresolved_citations(body_of(f"<p>Plain CAM {CITATION} is the baseline.</p>")) == []
    code = "<pre>{cite:p}`zhou2016cam` x = a ?? b</pre><code>[?]</code>"
    assert unresolved_citations(body_of(code)) == []  # code may quote anything
    # bad pages: a citation of no reference, a marker, a role left as text
    assert unresolved_citations(body_of('<p><span class="bibtex-citation">[]</span></p>')) == [
        "citation '[]' links to no reference"]
    assert unresolved_citations(body_of("<p>as shown in [?].</p>")) == ["'[?]' in the text"]
    assert unresolved_citations(body_of("<p>see Figure ??</p>")) == ["'??' in the text"]
    assert unresolved_citations(body_of("<p>CAM {cite:p}`zhou2016cam`</p>")) == [
        "'{cite:p}' left as text"]
    assert unresolved_citations(body_of("<p>CAM :cite:`zhou2016cam`</p>")) == [
        "':cite:' left as text"]


#: A proof's label as sphinx-proof names it ("lem-04-smaller-side"), which a reader should
#: never see as an entry of the proof index.
PROOF_LABEL = re.compile(r"^(?:lem|prop|thm|def|cor)-\d\d-[\w-]+$")


def proof_index_entries(page: bs4.BeautifulSoup) -> list[str]:
    """The entries (link texts) of the proof index page."""
    table = page.find("table", class_="indextable") or page
    return [a.get_text(" ", strip=True) for a in table.find_all("a") if a.get("href")]


@pytest.mark.skipif(not (HTML_DIR / "prf-prf.html").is_file(), reason="no proof index built")
def test_the_proof_index_names_each_result_by_its_title():
    entries = proof_index_entries(soup(HTML_DIR / "prf-prf.html"))
    assert entries, "the proof index lists nothing"
    assert not [e for e in entries if PROOF_LABEL.match(e)], entries
    assert any(e.startswith("Lemma: ") for e in entries), entries


def test_proof_index_check_finds_raw_labels():
    raw = bs4.BeautifulSoup('<table class="indextable"><tr><td><a href="b/04.html#x">'
                            'lem-04-smaller-side</a></td></tr></table>', "html.parser")
    assert [e for e in proof_index_entries(raw) if PROOF_LABEL.match(e)] == [
        "lem-04-smaller-side"]


#: A verdict of the book's vocabulary (`csoa_nb.report.stats.verdict_words`): a word adjusted
#: by Holm, or a difference suggested before the adjustment.
VERDICT = re.compile(r"\b(?:better|worse|reproduced|opposite|shown|resolved) \(Holm, \d+ tests\)"
                     r"|\bsuggested (?:better|worse)\b")
#: What names a metric (the vocabulary's column names and prose names, `report.vocabulary`).
METRIC_NAME = re.compile(r"MaxBoxAccV2|PxAP|loc\. err|cls\. err|GT-known|box accuracy|IoU"
                         r"|S > 0\.5|mass ratio|raw CAM|wall time|L_D", re.IGNORECASE)


def _column_header(cell: bs4.element.Tag) -> str:
    """The text of the header over a table cell (its column's ``th`` in the head)."""
    row = cell.find_parent("tr")
    table = cell.find_parent("table")
    if row is None or table is None:
        return ""
    index = row.find_all(["td", "th"]).index(cell)
    head = table.find("thead")
    headers = head.find_all("th") if head else []
    return headers[index].get_text(" ", strip=True) if index < len(headers) else ""


def verdicts_without_metric(html: str) -> list[str]:
    """Each verdict in `html` whose sentence (its list item or paragraph) or, in a table, whose
    row or column header names no metric: the first characters of where it stands."""
    page = bs4.BeautifulSoup(html, "html.parser")
    for code in page.find_all(["pre", "code"]):
        code.extract()
    found = []
    for text in page.find_all(string=VERDICT):
        cell = text.find_parent(["td", "th"])
        if cell is not None:
            row = cell.find_parent("tr")
            where = " ".join([_column_header(cell), row.get_text(" ", strip=True) if row else "",
                              (cell.find_parent("table").find("caption") or cell).get_text(
                                  " ", strip=True)])
        else:
            block = text.find_parent(["li", "p"]) or text.parent
            where = block.get_text(" ", strip=True)
        if not METRIC_NAME.search(where):
            found.append(where[:80])
    return found


@needs_build
def test_every_verdict_names_its_metric(page):
    missing = verdicts_without_metric(str(article(page)))
    assert not missing, f"{page.name}: verdicts that name no metric: {missing}"


def test_verdict_check_wants_a_metric_beside_the_word():
    good = ("<ul><li>CSoA − CAM: MaxBoxAccV2 −10.6 points, <em>worse (Holm, 24 tests)</em>"
            "</li></ul><table><thead><tr><th>row</th><th>PxAP</th></tr></thead><tbody><tr>"
            "<td>CSoA</td><td>−1.0 better (Holm, 4 tests)</td></tr></tbody></table>")
    assert verdicts_without_metric(good) == []
    bad = "<p>CSoA (as written) does worse: <strong>worse (Holm, 24 tests)</strong>.</p>"
    (found,) = verdicts_without_metric(bad)
    assert found.startswith("CSoA (as written) does worse: worse (Holm, 24 tests)")


#: A table label given literally in a notebook's code (`show_table(..., name="tbl-...")`).
TABLE_NAME = re.compile(r"""name=["'](tbl-[\w-]+)["']""")
#: Tables a page shows only when their runs exist: label -> when.
CONDITIONAL_TABLES = {"tbl-13-run": "the paper preset's own run, trained on real CUB data"}


def tables_not_shown(code_cells: list[str], html: str) -> list[str]:
    """The table labels that code cells give to `show_table` but that have no anchor on the
    built page: a table made and never displayed (not the cell's last expression, no
    `display()` around it)."""
    ids = {tag["id"] for tag in bs4.BeautifulSoup(html, "html.parser").find_all(id=True)}
    named = [name for source in code_cells for name in TABLE_NAME.findall(source)]
    return [name for name in named if name not in ids]


@needs_build
def test_every_named_table_is_shown(page):
    import nbformat

    source = REPO_ROOT / "book" / f"{page.stem}.ipynb"
    if not source.is_file():
        pytest.skip(f"{page.stem} is not a notebook of book/")
    cells = [cell.source for cell in nbformat.read(source, as_version=4).cells
             if cell.cell_type == "code"]
    missing = [name for name in tables_not_shown(cells, str(article(page)))
               if name not in CONDITIONAL_TABLES]
    assert not missing, (f"{page.name}: tables made but not displayed: {missing}; end the "
                         "cell with the table or wrap it in display()")


def test_table_check_finds_a_table_left_undisplayed():
    cells = ['show_table(frame, "Errors.", name="tbl-02-errors")\nMarkdown("done")',
             "display(show_table(grid, 'Grid.', name='tbl-02-grid'))",
             'show_table(frame, "Each regime.", name=f"tbl-02-{regime}")']
    html = ('<div class="pst-scrollable-table-container"><table id="tbl-02-grid">'
            "</table></div>")
    assert tables_not_shown(cells, html) == ["tbl-02-errors"]
    assert tables_not_shown(cells, html.replace("tbl-02-grid", "tbl-02-errors")) == [
        "tbl-02-grid"]


#: The threshold-free metrics a row − CAM comparison is keyed by across pages (a top-1 error
#: counts only with its θ written beside it: "top-1 loc. error at θ = 0.3").
KEYED_METRIC = re.compile(r"(MaxBoxAccV2|PxAP|top-1 loc\. error at θ = [\d.]+)", re.IGNORECASE)
#: The words that name a training regime, and the regime they name.
REGIME_WORDS = {"from scratch": "scratch", "fine-tuned": "pretrained"}
_REGIME = re.compile("|".join(map(re.escape, REGIME_WORDS)), re.IGNORECASE)
_NUMBER = r"[+−-]?\d+\.\d+"
#: A keyed metric and its number: "MaxBoxAccV2 −10.5 points [−13.7, −7.2]", "PxAP +5.1".
_METRIC_VALUE = (rf"(?P<metric>{KEYED_METRIC.pattern}):? (?P<mean>{_NUMBER})(?: points)?"
                 rf"(?: \[(?P<low>{_NUMBER}), (?P<high>{_NUMBER})\])?")
#: "CSoA (as written) − CAM (base): MaxBoxAccV2 −10.5 points [−13.7, −7.2]" and the like.
PROSE_COMPARISON = re.compile(
    r"(?P<row>[A-Z][\w+]*(?: \((?:as written|ours)\))?) − CAM(?: \(base\))?[:,]? "
    + _METRIC_VALUE, re.IGNORECASE)
#: A further metric of the same comparison: "...; top-1 loc. error at θ = 0.3 +21.3 points
#: [+13.7, +28.9]" (never across the start of another comparison).
PROSE_CONTINUATION = re.compile(r"(?:(?! − CAM)[^;])*?; " + _METRIC_VALUE, re.IGNORECASE)
_CELL = re.compile(rf"^(?P<mean>{_NUMBER})(?: \[(?P<low>{_NUMBER}), (?P<high>{_NUMBER})\])?")


def _number(text: str | None) -> float | None:
    return None if text is None else float(text.replace("−", "-"))


def _regime(text: str, default: str | None) -> str | None:
    found = _REGIME.findall(text)
    return REGIME_WORDS[found[-1].lower()] if found else default


def comparison_numbers(html: str) -> list[tuple[tuple[str, str, str | None], tuple, str]]:
    """Every row − CAM difference a page prints on a keyed metric, in prose or in a table whose
    caption says "row − CAM": ((row, metric, regime), (mean, low, high), where). The regime
    is the last one named before the number (a table's: its caption's)."""
    page = bs4.BeautifulSoup(html, "html.parser")
    for hidden in page.find_all(["script", "style", "pre"]):
        hidden.extract()
    found, regime = [], None
    blocks = [tag for tag in page.find_all(["h1", "h2", "h3", "p", "li", "table"])
              if not tag.find_parent("table")
              and not (tag.name != "table" and tag.find(["p", "li", "table"]))]
    for block in blocks:
        if block.name == "table":
            caption = " ".join((block.find("caption") or block).get_text(" ").split())
            if "− CAM" not in caption:
                continue
            table_regime = _regime(caption, regime)
            headers = [" ".join(th.get_text(" ").split()) for th in block.find("tr").find_all(
                ["th", "td"])]
            for row in block.find_all("tr")[1:]:
                cells = [" ".join(c.get_text(" ").split()) for c in row.find_all(["th", "td"])]
                if not cells:
                    continue
                label = re.sub(r" − CAM(?: \(base\))?$", "", cells[0])
                for header, cell in zip(headers, cells, strict=False):
                    metric, value = KEYED_METRIC.search(header), _CELL.match(cell)
                    if metric and value and not header.lower().startswith("t interval"):
                        key = (label, metric.group(1).lower(), table_regime)
                        found.append((key, tuple(map(_number, value.groups())), caption[:60]))
            continue
        text = " ".join(block.get_text(" ").split())
        for match in PROSE_COMPARISON.finditer(text):
            regime = _regime(text[:match.start()], regime)
            metric, end = match, match.end()
            while metric:
                key = (match["row"], metric["metric"].lower(), regime)
                found.append((key, (_number(metric["mean"]), _number(metric["low"]),
                                    _number(metric["high"])), text[match.start():end][:120]))
                metric = PROSE_CONTINUATION.match(text, end)
                end = metric.end() if metric else end
        regime = _regime(text, regime)
    return found


def conflicting_numbers(pages: dict[str, str]) -> list[str]:
    """Comparisons printed with different numbers on two pages (or twice on one): the means
    differ by more than rounding (0.051 points), or both intervals are printed and differ."""
    seen: dict[tuple, tuple[tuple, str]] = {}
    conflicts = []
    for name, html in pages.items():
        for key, value, where in comparison_numbers(html):
            if key not in seen:
                seen[key] = (value, f"{name}: {where}")
                continue
            (mean, low, high), first = seen[key]
            differs = abs(mean - value[0]) > 0.051 or (
                None not in (low, value[1]) and (abs(low - value[1]) > 0.051
                                                 or abs(high - value[2]) > 0.051))
            if differs:
                conflicts.append(f"{key}: {first} | {name}: {where}")
    return conflicts


@needs_build
def test_no_two_pages_give_one_comparison_different_numbers():
    conflicts = conflicting_numbers({page.stem: str(article(page)) for page in PAGES})
    assert not conflicts, "one comparison, different numbers:\n" + "\n".join(conflicts)


def test_number_check_finds_one_comparison_printed_twice_otherwise():
    intro = ("<p>Fine-tuned as the paper trains: CSoA (as written) − CAM: MaxBoxAccV2 −10.5 "
             "points [−13.7, −7.2], worse; top-1 loc. error at θ = 0.3 +21.3 points. "
             "CSoA+fix (ours) − CAM: MaxBoxAccV2 +7.1 points; PxAP +5.1.</p>"
             "<p>From scratch: CSoA (as written) − CAM: MaxBoxAccV2 +1.4 points [−7.0, +9.7].</p>")
    results = ("<table><caption>Each row − CAM (base), pretrained + fine-tuned, seeds 0-4"
               "</caption><tr><th>row</th><th>seeds</th><th>MaxBoxAccV2</th><th>PxAP</th></tr>"
               "<tr><td>CSoA (as written)</td><td>5</td><td>−10.8 [−14.4, −6.8] worse</td>"
               "<td>−12.2 [−16.2, −8.3]</td></tr></table>")
    (conflict,) = conflicting_numbers({"00": intro, "15": results})
    assert conflict.startswith("('CSoA (as written)', 'maxboxaccv2', 'pretrained')")
    agreeing = results.replace("−10.8 [−14.4, −6.8]", "−10.5 [−13.7, −7.2]")
    assert conflicting_numbers({"00": intro, "15": agreeing}) == []
    # the same row from scratch, or another metric, is another comparison
    scratch = agreeing.replace("pretrained + fine-tuned", "from scratch").replace(
        "−10.5 [−13.7, −7.2]", "+1.4 [−7.0, +9.7]")
    assert conflicting_numbers({"00": intro, "14": scratch}) == []
    # a second metric after ";" belongs to its own row, and is checked too
    keys = [key for key, _, _ in comparison_numbers(intro)]
    assert keys == [("CSoA (as written)", "maxboxaccv2", "pretrained"),
                    ("CSoA (as written)", "top-1 loc. error at θ = 0.3", "pretrained"),
                    ("CSoA+fix (ours)", "maxboxaccv2", "pretrained"),
                    ("CSoA+fix (ours)", "pxap", "pretrained"),
                    ("CSoA (as written)", "maxboxaccv2", "scratch")]
    pxap = results.replace("−12.2 [−16.2, −8.3]", "+5.1").replace("CSoA (as written)",
                                                                   "CSoA+fix (ours)")
    pxap = pxap.replace("−10.8 [−14.4, −6.8]", "+7.1")
    assert conflicting_numbers({"00": intro, "15": pxap}) == []
    (conflict,) = conflicting_numbers({"00": intro, "15": pxap.replace("+5.1", "+5.4")})
    assert "'pxap'" in conflict
