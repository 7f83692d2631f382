"""Every notebook in notebooks/ runs top to bottom with quick settings, and is committed without outputs.

A new notebook is picked up by dropping it into notebooks/; one that is too slow for the default suite
even with WORKBENCH_QUICK=1 gets its name added to SLOW (it then runs under ``pytest -m slow``).
"""

from __future__ import annotations

import nbformat
import pytest
from nbclient.exceptions import CellExecutionError
from nbformat.v4 import new_code_cell, new_notebook

from workbench.cli.notebooks import execute_notebook, has_outputs, notebook_paths, strip_outputs
from workbench.cli.studies import available_case_studies

NOTEBOOKS = notebook_paths()
SLOW: set[str] = set()


def _params():
    return [pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if p.stem in SLOW else []) for p in NOTEBOOKS]


def test_the_tour_is_there():
    assert "tour" in {p.stem for p in NOTEBOOKS}


def test_every_case_study_has_its_notebook():
    studies = set(available_case_studies())
    assert {"capacity", "mqar", "outliers", "memorization"} <= studies
    assert studies <= {p.stem for p in NOTEBOOKS}, f"no notebook for {studies - {p.stem for p in NOTEBOOKS}}"


@pytest.mark.integration
@pytest.mark.parametrize("path", _params())
def test_notebook_runs_without_errors(path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # tiny tensors: one thread is faster on a shared 2-core machine
    nb = execute_notebook(path, quick=True, timeout=300)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count is not None for c in code)
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path):
    assert not has_outputs(path), f"{path} holds outputs; run: python -m workbench.cli.notebooks strip {path.stem}"


@pytest.mark.integration
def test_runner_sets_quick_mode_and_folder_and_fails_on_a_cell_error(tmp_path):
    ok = tmp_path / "ok.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell(
        "import os\n"
        "assert os.environ['WORKBENCH_QUICK'] == '1'\n"
        f"assert os.path.samefile(os.getcwd(), {str(tmp_path)!r})\n"
        "print('ran')"
    )]), ok)
    executed = execute_notebook(ok, quick=True)
    assert "ran" in executed.cells[0].outputs[0].text
    assert not has_outputs(ok)  # executing never writes the file back

    nbformat.write(executed, ok)
    assert has_outputs(ok) and strip_outputs(ok) and not has_outputs(ok) and not strip_outputs(ok)

    bad = tmp_path / "bad.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1"), new_code_cell("raise ValueError('boom')")]), bad)
    with pytest.raises(CellExecutionError, match="boom"):
        execute_notebook(bad, quick=False)


def test_the_memorization_notebook_is_there():
    assert "memorization" in {p.stem for p in NOTEBOOKS}


def test_the_fwm_hops_notebook_is_there():
    assert "fwm_hops" in {p.stem for p in NOTEBOOKS}
