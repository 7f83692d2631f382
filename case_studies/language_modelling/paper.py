"""The papers' WikiText-103 perplexities (per word), each table with where its numbers come from — first-hand
or second-hand — and what we could not find.

First-hand: Schlag, Irie & Schmidhuber 2021, "Linear Transformers Are Secretly Fast Weight Programmers",
ICML 2021, arXiv 2102.11174 (v3). Read in the paper's own text as rendered by ar5iv
(https://ar5iv.labs.arxiv.org/html/2102.11174, "the ar5iv render"), from a stored clipping of that page in the
code index (``read_file`` file id 59560424020: front matter ``source: https://ar5iv.labs.arxiv.org/html/2102.11174``,
then the whole paper, §6.3 and Appendix D.3 with the tables as HTML). Every number below was copied from
that text cell by cell, and agrees cell by cell with a second, independent reading of the same ar5iv render
stored in the code index (file id 61615615324, a study card that transcribes Tables 2–5):

- Table 2 (overcapacity regime; D = 128, L = 256, 40M parameters "small"; D = 256, L = 384, 90M "medium";
  Performer m = 8 / 16 random features so that its capacity equals the linear Transformer's; no DPFP, "since
  in both configurations even the smallest value for ν provides enough capacity"): Transformer, Linear
  Transformer (sum), Delta Network (delta), Performer (sum, delta), valid and test, small and medium.
- Table 5 (Appendix D.3, non-overcapacity; small, Performer m = 16, DPFP ν = 1, d_dot = 256 for both):
  Transformer, Performer (sum, delta), DPFP (sum, delta), valid and test. The paper compares these with
  Table 2's Linear Transformer in its text ("the Performer and DPFP baseline models with the sum update rule
  do not outperform the Linear Transformer baseline from Table 2").

Second-hand: Irie, Schlag, Csordás & Schmidhuber 2021, "Going Beyond Linear Transformers with Recurrent Fast
Weight Programmers", NeurIPS 2021, arXiv 2106.06295 — small setting, TEST perplexities only, as quoted by a
literature review stored in the code index (file id 66006098841, "Per-paper review — in-context-learning
corpus, paper 32 of 38", §4.1: Transformer 34.1, Linear Transformer 38.3, Delta Net 35.2, Delta MLP 36.8,
Delta RNN 35.0, Delta LSTM 33.8, RDN 35.2). The review calls the table "Table 1"; the authors' README
(IDSIA/recurrent-fwp ``language_modeling/README.md`` @ 2cded42) refers to the WikiText-103 table as "Table 2".
Its Transformer and Linear Transformer test numbers equal Schlag et al.'s Table 2; its Delta Net (35.2) does
not (Schlag et al.: 35.5) — a different run or a typo, we cannot tell without the paper.

Roads that failed for Irie et al.'s table (see the case study's README for the whole list): the ``pages``
corpus holds the paper's LaTeX and extracted paragraphs (SPIQA dumps) but returns only their opening
excerpt; no ar5iv/arXiv HTML clipping of 2106.06295 is in the code index; the authors' repositories
(IDSIA/recurrent-fwp, IDSIA/lmtool-fwp, ischlag/fast-weight-transformers, IDSIA/modern-srwm, every commit)
print no results table. The modern SRWM paper (Irie et al. 2022, arXiv 2202.05780) has no WikiText-103
result as far as we know (its repository IDSIA/modern-srwm has only RL and few-shot code): no row.

Mapping to our models: the Linear Transformer (sum rule, elu+1, attention normaliser) is ``sum-elu1-norm``;
the Delta Network / Delta Net (delta rule, elu+1, φ sum-normalised; IDSIA/lmtool-fwp
``src/utils/cuda_fast_weight_layer.py``) is ``delta-elu1-norm``; the Performer is ``sum-favor`` /
``delta-favor`` (ours: m = 64 fixed features, not the paper's 8 or 16); DPFP (ν = 1) is ``sum-dpfp1`` /
``delta-dpfp1``; the Transformer is ``softmax``; the Recurrent Delta Net is ``rec-delta``.
"""

from __future__ import annotations

from typing import Any, Optional

SCHLAG_AR5IV = ("Schlag et al. 2021 (arXiv 2102.11174v3), {what}; first-hand: the paper's text as rendered at "
                "https://ar5iv.labs.arxiv.org/html/2102.11174, read from a stored clipping (code index file id "
                "59560424020)")
SOURCE_IRIE = ("Irie et al. 2021 (arXiv 2106.06295), WikiText-103 small setting, test ppl; second-hand, from a "
               "literature review in the code index (file id 66006098841); the paper's table itself was not found")


def _row(name: str, model: Optional[str], valid: Optional[float], test: Optional[float]) -> dict[str, Any]:
    return {"row": name, "model": model, "valid": valid, "test": test}


# key → table. "tag" labels the table's cells in the README; "hand" is "first" (read in the paper's own text)
# or "second" (quoted by someone else); "metric" is the column a table is ranked by (see :func:`score`).
TABLES: dict[str, dict[str, Any]] = {
    "schlag2021_t2_small": {
        "title": "Schlag et al. 2021, Table 2, WikiText-103 small", "tag": "S2", "hand": "first",
        "source": SCHLAG_AR5IV.format(what="Table 2, small (D = 128, L = 256; Performer m = 8)"),
        "setting": "small", "metric": "valid",
        "rows": [
            _row("Transformer", "softmax", 33.0, 34.1),
            _row("Linear Transformer (sum)", "sum-elu1-norm", 37.1, 38.3),
            _row("Delta Network (delta)", "delta-elu1-norm", 34.1, 35.5),
            _row("Performer (sum)", "sum-favor", 39.0, 39.6),
            _row("Performer (delta)", "delta-favor", 36.1, 37.2),
        ],
    },
    "schlag2021_t5_small": {
        "title": "Schlag et al. 2021, Table 5, WikiText-103 small", "tag": "S5", "hand": "first",
        "source": SCHLAG_AR5IV.format(what="Table 5 (Appendix D.3), small, non-overcapacity (Performer m = 16, "
                                           "DPFP ν = 1)"),
        "setting": "small", "metric": "valid",
        "rows": [
            _row("Transformer", "softmax", 33.0, 34.1),
            _row("Performer (sum)", "sum-favor", 38.0, 38.8),
            _row("Performer (delta)", "delta-favor", 36.0, 37.0),
            _row("DPFP (sum)", "sum-dpfp1", 37.7, 38.8),
            _row("DPFP (delta)", "delta-dpfp1", 33.9, 35.0),
        ],
    },
    "schlag2021_t2_medium": {
        "title": "Schlag et al. 2021, Table 2, WikiText-103 medium", "tag": "S2m", "hand": "first",
        "source": SCHLAG_AR5IV.format(what="Table 2, medium (D = 256, L = 384; Performer m = 16)"),
        "setting": "medium", "metric": "valid",
        "rows": [
            _row("Transformer", "softmax", 27.9, 29.6),
            _row("Linear Transformer (sum)", "sum-elu1-norm", 31.1, 33.0),
            _row("Delta Network (delta)", "delta-elu1-norm", 29.7, 31.5),
            _row("Performer (sum)", "sum-favor", 32.2, 33.8),
            _row("Performer (delta)", "delta-favor", 30.0, 31.8),
        ],
    },
    "irie2021_small": {
        "title": "Irie et al. 2021, WikiText-103 small (second-hand)", "tag": "I†", "hand": "second",
        "source": SOURCE_IRIE, "setting": "small", "metric": "test",  # the valid column was not found
        "rows": [
            _row("Transformer", "softmax", None, 34.1),
            _row("Linear Transformer", "sum-elu1-norm", None, 38.3),
            _row("Delta Net", "delta-elu1-norm", None, 35.2),
            _row("Delta MLP", None, None, 36.8),
            _row("Delta RNN", None, None, 35.0),
            _row("Delta LSTM", None, None, 33.8),
            _row("Recurrent Delta Net", "rec-delta", None, 35.2),
        ],
    },
}

NOT_FOUND = ("Irie et al. 2021 (arXiv 2106.06295): the paper's own WikiText-103 table (its valid column, and "
             "its test column first-hand) — only a second-hand quote of the test column was found; the SRWM "
             "paper (arXiv 2202.05780) has no WikiText-103 result. Schlag et al. report DPFP on WikiText-103 "
             "for ν = 1 only (ν = 2 \"was not beneficial\", no number given; ν = 3 not mentioned), so dpfp2 and "
             "dpfp3 have no paper row.")


def score(row: dict[str, Any]) -> float:
    """The number a row is ranked by: validation perplexity where the table has it, else test."""
    return row["valid"] if row.get("valid") is not None else row["test"]


def rows_with_models_of(table: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(our model, row) for the rows of ``table`` (a value of :data:`TABLES`) that have a counterpart."""
    return [(row["model"], row) for row in table["rows"] if row.get("model")]


def rows_with_models(key: str) -> list[tuple[str, dict[str, Any]]]:
    """(our model, row) for the rows of table ``key`` that have a counterpart among our models."""
    return rows_with_models_of(TABLES[key])


def for_model(model: str, setting: str = "small") -> list[tuple[str, dict[str, Any]]]:
    """(table tag, row) for the rows of every table in ``setting`` whose counterpart is ``model``."""
    return [(t["tag"], row) for t in TABLES.values() if t["setting"] == setting for row in t["rows"]
            if row.get("model") == model]


def _verdict(better: float, worse: float) -> str:
    return "holds" if better < worse else "reversed" if better > worse else "tie"


def claim_evidence(better: str, worse: str) -> list[str]:
    """What the papers say about "``better`` has lower perplexity than ``worse``": for every table holding
    both, "<tag>: <better> vs <worse> (<verdict>)" in the table's metric; if no table holds both, the
    first-hand small-setting rows of each from different tables ("S5 37.7 vs S2 37.1 (reversed)"), as the
    paper itself compares Table 5 with Table 2. Empty when neither exists."""
    out = []
    for t in TABLES.values():
        rows = dict(rows_with_models_of(t))
        if better in rows and worse in rows:
            b, w = score(rows[better]), score(rows[worse])
            out.append(f"{t['tag']}: {b:.1f} vs {w:.1f} ({_verdict(b, w)})")
    if out:
        return out
    first = [t for t in TABLES.values() if t["hand"] == "first" and t["setting"] == "small"]
    b = next(((t["tag"], r) for t in first for m, r in rows_with_models_of(t) if m == better), None)
    w = next(((t["tag"], r) for t in first for m, r in rows_with_models_of(t) if m == worse), None)
    if b and w:
        out.append(f"{b[0]} {score(b[1]):.1f} vs {w[0]} {score(w[1]):.1f} ({_verdict(score(b[1]), score(w[1]))})")
    return out

