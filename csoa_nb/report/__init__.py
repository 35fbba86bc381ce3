"""The report: tables, prose, figures, widgets, the paper's numbers and the book's runbook
(see DESIGN.md, "Layers")."""
