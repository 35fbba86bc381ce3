"""A Sphinx extension for the book's HTML (listed in ``_config.yml``, ``extra_extensions``).

- Text outputs wrap at the column (``book_static/csoa_book.css``): a printed line longer than
  the column would otherwise be cut off behind a horizontal scrollbar.
- Each inline script appears once per page. Jupyter Book 1 registers the configuration scripts
  of sphinx-thebe and sphinx-togglebutton twice (once with ``filename=None``, once with ``''``,
  so Sphinx's own deduplication misses them), and the second ``const THEBE_JS_URL`` stops with
  "Identifier 'THEBE_JS_URL' has already been declared" in the console of every page.

tests/browser (``make test-browser``) checks both on the built book.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

STATIC_DIR = Path(__file__).with_name("book_static")
CSS_FILE = "csoa_book.css"


def _script_key(script: Any) -> tuple:
    """What makes two page scripts the same: source file (None and '' alike) and attributes."""
    filename = getattr(script, "filename", script)
    attributes = getattr(script, "attributes", {})
    return (os.fspath(filename or ""), tuple(sorted(attributes.items())))


def unique_scripts(scripts: list[Any]) -> list[Any]:
    """`scripts` without repeats (first one kept, order unchanged)."""
    seen: set[tuple] = set()
    kept = []
    for script in scripts:
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            kept.append(script)
    return kept


def _dedupe_page_scripts(app, pagename, templatename, context, doctree) -> None:
    if "script_files" in context:
        context["script_files"] = unique_scripts(list(context["script_files"]))


def _add_static(app) -> None:
    app.config.html_static_path.append(str(STATIC_DIR))


def setup(app) -> dict[str, Any]:
    app.connect("builder-inited", _add_static)
    app.add_css_file(CSS_FILE)
    # after every other handler (the default priority is 500), so that all scripts are in
    app.connect("html-page-context", _dedupe_page_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
