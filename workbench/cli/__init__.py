"""The ``workbench`` command line (``workbench --help``) and the helpers only it uses: ``describe``
(``workbench info``), ``demo`` (``workbench demo``), ``studies`` (``workbench case-study``) and
``notebooks`` (``python -m workbench.cli.notebooks``, the notebook runner the tests use)."""

from .main import app, main

__all__ = ["app", "main"]
