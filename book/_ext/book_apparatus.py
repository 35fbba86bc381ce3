"""Sphinx extension of the csoa-book: the paper's equation numbers, no papermill cell.

Loaded by ``_config.yml`` (``sphinx: local_extensions``). Two jobs, both on ``doctree-read``:

* **Display equations carry the paper's numbers.** A MyST display equation labelled ``eqN``
  (``$$ ... $$ (eq5)``) is numbered N, the number of the equation in Kou et al. (WACV 2021),
  and ``{eq}`eq5``` refers to it by that number. The label is book-wide, so each equation is
  labelled once, in the chapter that derives it. Any other label on an equation is a warning
  (an error in the strict build): only the paper's equations are numbered, every other
  display equation stays unlabelled. Needs ``math_numfig: false`` (numbers not per chapter).
* **Papermill's injected-parameters cell does not show.** The runbook executes every chapter
  with papermill, which adds a cell tagged ``injected-parameters`` after the ``parameters``
  cell; the static book hides it, as it hides the ``parameters`` cell (tagged ``remove-cell``).
  The values a run used are printed by the chapters themselves (e.g. "This run" in chapter 00).
"""

from __future__ import annotations

import re
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: Labels of the paper's equations: ``eq`` and the paper's equation number.
PAPER_EQUATION = re.compile(r"eq(?P<number>[1-9][0-9]*)")
#: Cell tag papermill gives the cell of parameters it injects.
INJECTED_TAG = "injected-parameters"


def paper_equation_number(label: str) -> int | None:
    """The paper's equation number a label names (``"eq5"`` -> 5), or None."""
    match = PAPER_EQUATION.fullmatch(label)
    return int(match["number"]) if match else None


def _number_paper_equations(app: Sphinx, doctree: nodes.document) -> None:
    domain = app.env.get_domain("math")
    equations = domain.data.setdefault("objects", {})  # label -> (docname, number)
    for node in doctree.findall(nodes.math_block):
        label = node.get("label")
        if not label:
            continue
        number = paper_equation_number(label)
        if number is None:
            logger.warning(
                f"display equation labelled {label!r}: only the paper's equations are "
                "numbered; label it eqN with N its number in the paper, or drop the label",
                location=node,
            )
            continue
        node["number"] = number
        equations[label] = (app.env.docname, number)


def _remove_injected_parameters(app: Sphinx, doctree: nodes.document) -> None:
    for node in list(doctree.findall(nodes.container)):
        if node.get("nb_element") != "cell_code":
            continue
        if INJECTED_TAG in node.get("cell_metadata", {}).get("tags", []):
            node.parent.remove(node)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("doctree-read", _number_paper_equations)
    app.connect("doctree-read", _remove_injected_parameters)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
