"""Sphinx extension of the csoa-book: the paper's equation numbers, no papermill cell.

Loaded by ``_config.yml`` (``sphinx: local_extensions``). Three jobs:

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
* **The proof index names each result by its title.** sphinx-proof's index lists labels
  ("lem-04-smaller-side"); `TitledProofIndex` lists "Lemma: <its title>" under the title of
  the chapter that states it (the titles are collected on ``doctree-read``).
"""

from __future__ import annotations

import re
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging
from sphinx_proof.domain import ProofDomain, ProofIndex

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


def _collect_proof_titles(app: Sphinx, doctree: nodes.document) -> None:
    titles = app.env.__dict__.setdefault("book_proof_titles", {})
    for node in doctree.findall(nodes.Element):
        if "realtype" in node.attributes and node.get("label"):
            # the title as proof_title_format put it, " (title)": the title alone
            title = node.get("title", "").strip()
            if title.startswith("(") and title.endswith(")"):
                title = title[1:-1]
            titles[node["label"]] = (app.env.docname, title)


def _purge_proof_titles(app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    titles = env.__dict__.get("book_proof_titles", {})
    for label in [k for k, (doc, _) in titles.items() if doc == docname]:
        del titles[label]


def _merge_proof_titles(app: Sphinx, env: BuildEnvironment, docnames: set[str],
                        other: BuildEnvironment) -> None:
    env.__dict__.setdefault("book_proof_titles", {}).update(
        other.__dict__.get("book_proof_titles", {}))


class TitledProofIndex(ProofIndex):
    """The proof index with each entry named "Lemma: <title>" and grouped by chapter."""

    def generate(self, docnames: Any = None) -> tuple[list[tuple[str, list[Any]]], bool]:
        env = self.domain.env
        titles = env.__dict__.get("book_proof_titles", {})
        groups: dict[str, list[Any]] = {}
        for label, values in getattr(env, "proof_list", {}).items():
            docname = values["docname"]
            title = titles.get(label, (docname, ""))[1]
            kind = values["realtype"].capitalize()
            chapter = env.titles[docname].astext() if docname in env.titles else docname
            groups.setdefault(chapter, []).append(
                (f"{kind}: {title}" if title else kind, 0, docname, label, "", "", ""))
        return sorted((chapter, sorted(entries)) for chapter, entries in groups.items()), True


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("doctree-read", _number_paper_equations)
    app.connect("doctree-read", _remove_injected_parameters)
    app.connect("doctree-read", _collect_proof_titles)
    app.connect("env-purge-doc", _purge_proof_titles)
    app.connect("env-merge-info", _merge_proof_titles)
    ProofDomain.indices = [TitledProofIndex]
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
