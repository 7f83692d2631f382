"""No pickle anywhere: the package, the app, the case studies, the benchmarks and the scripts never unpickle.

``torch.load`` must pass ``weights_only=True`` (on the same call), and ``pickle`` / ``eval(`` do not appear in code
(``model.eval()`` and ``.eval(`` methods are fine; the builtin ``eval`` is not).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# an import of a pickling module, or a call into one (a docstring saying "never pickle" is fine)
UNPICKLE = r"^\s*(import|from)\s+(c?pickle|_pickle|dill|shelve|marshal|joblib)\b|\b(c?pickle|dill|shelve|marshal|joblib)\.\w+\("
TREES = ["workbench", "kernels", "case_studies", "benchmarks", "scripts", "app.py"]


def _sources() -> list[Path]:
    files = []
    for tree in TREES:
        p = ROOT / tree
        files += [p] if p.is_file() else sorted(p.rglob("*.py"))
    return files


def _code_lines(path: Path):
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        code = line.split("#", 1)[0]
        if code.strip():
            yield n, code


def test_the_scan_sees_the_code():
    assert len(_sources()) > 100


def test_no_pickle_no_unsafe_torch_load_no_builtin_eval():
    bad = []
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"torch\.load\(", text):
            call = text[m.start(): text.find(")", m.start()) + 1]
            if "weights_only=True" not in call:
                bad.append(f"{path.relative_to(ROOT)}: torch.load without weights_only=True: {call[:80]}")
        for n, code in _code_lines(path):
            if re.search(UNPICKLE, code):
                bad.append(f"{path.relative_to(ROOT)}:{n}: {code.strip()[:80]}")
            if re.search(r"(?<![.\w])eval\(", code) or re.search(r"(?<![.\w])exec\(", code):
                bad.append(f"{path.relative_to(ROOT)}:{n}: {code.strip()[:80]}")
    assert not bad, "\n".join(bad)


def test_the_scan_would_catch_them():
    """The patterns match what they must (a test that cannot fail is no test)."""
    assert re.search(UNPICKLE, "import pickle") and re.search(UNPICKLE, "  from dill import loads")
    assert re.search(UNPICKLE, "x = pickle.loads(b)") and not re.search(UNPICKLE, '"""never pickle"""')
    assert re.search(r"(?<![.\w])eval\(", "x = eval('1')")
    assert not re.search(r"(?<![.\w])eval\(", "model.eval()")
