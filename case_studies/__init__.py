"""One-command reproductions of published results: ``python -m case_studies.<name> [--quick]``.

Each case study writes ``results.json`` and its figures (HTML and PNG) to an output directory and keeps
the paper's numbers beside ours in its ``README.md``.
"""
