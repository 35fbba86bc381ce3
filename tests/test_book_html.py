"""csoa_nb.book.sphinx_html, the Sphinx extension behind the book's HTML (tests/browser checks
pages)."""

from sphinx.builders.html._assets import _JavaScript

from csoa_nb.book import sphinx_html as book_html


def test_unique_scripts_drops_the_second_inline_config():
    # Jupyter Book 1 registers sphinx-thebe's inline config twice, with filename None and '':
    # Sphinx's dedup (equality of _JavaScript) misses it, and the page logs a SyntaxError.
    thebe = 'const THEBE_JS_URL = "x"'
    scripts = [_JavaScript("doctools.js"), _JavaScript(None, body=thebe),
               _JavaScript("sphinx-thebe.js", **{"async": "async"}), _JavaScript("", body=thebe),
               _JavaScript("", body="var other = 1")]
    assert scripts[1] != scripts[3]
    kept = book_html.unique_scripts(scripts)
    assert kept == [scripts[0], scripts[1], scripts[2], scripts[4]]


def test_text_outputs_wrap():
    css = (book_html.STATIC_DIR / book_html.CSS_FILE).read_text(encoding="utf-8")
    assert "div.cell_output pre {" in css
    assert "white-space: pre-wrap;" in css
