"""The papers' WikiText-103 perplexities, with where each number comes from (filled in below)."""

from __future__ import annotations

from typing import Any

TABLES: dict[str, dict[str, Any]] = {}


def rows_with_models(key: str) -> list[tuple[str, dict[str, Any]]]:
    """(our model, row) for the rows of table ``key`` that have a counterpart among our models."""
    return [(row["model"], row) for row in TABLES[key]["rows"] if row.get("model")]


def for_model(model: str, setting: str = "small") -> list[dict[str, Any]]:
    """The rows (of every table, in ``setting``) whose counterpart is ``model``."""
    return [row for t in TABLES.values() if t["setting"] == setting for row in t["rows"] if row.get("model") == model]
