"""The book's build tools, apart from the report's content: the runbook that executes the
chapters and builds the HTML (`runbook`), the Sphinx extension that mends the HTML
(`sphinx_html`), and how notebooks display tables, paths and messages (`display`)."""
