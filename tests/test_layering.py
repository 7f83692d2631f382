"""Imports point down: kernels → components → mixers → model → training → analyses → plots → app / CLI.

Every ``workbench`` import of a module is checked against the layer of the module it names (read with
``ast``, so lazy imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# layer of each top-level part of the package (a module may import its own layer and the ones below)
LAYERS = {
    "kernels": 0,
    "dataclass_io": 1, "atomic": 1, "paths": 1, "recipe_names": 1, "components": 1,
    "mixers": 2,
    "config": 3, "block": 3, "model": 3, "checkpoint": 3, "tasks": 3, "text": 3, "tl_compat": 3, "generation": 3,
    "run_dir": 4, "training": 4, "retrieval": 4, "pretrained": 4,
    "analysis": 5,
    "plots": 6,
    "app_support": 7, "streamlit_app": 7, "cli": 7,
}


def part_of(path: Path) -> str:
    rel = path.relative_to(ROOT)
    if rel.parts[0] == "kernels":
        return "kernels"
    return rel.parts[1].removesuffix(".py")


def imported_parts(path: Path) -> set[str]:
    """The top-level parts of ``workbench`` that ``path`` imports at run time."""
    tree = ast.parse(path.read_text())
    pkg = path.relative_to(ROOT).with_suffix("").parts
    if pkg[0] == "kernels":
        pkg = ("workbench",) + pkg
    out = set()
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and getattr(block.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(block)}
    for node in ast.walk(tree):
        if id(node) in typing_only:  # annotations only: no import at run time
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(pkg[: len(pkg) - node.level])
                mod = base + (node.module.split(".") if node.module else [])
            else:
                mod = (node.module or "").split(".")
            names = [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                mod = a.name.split(".")
                if mod[0] == "workbench" and len(mod) > 1:
                    out.add(mod[1])
            continue
        else:
            continue
        if mod[:1] != ["workbench"]:
            continue
        if len(mod) > 1:
            out.add(mod[1])
        else:  # from workbench import x: x is a part, or a name the package root re-exports lazily
            out.update(n for n in names if n in LAYERS)
    return out


def test_every_part_of_the_package_has_a_layer():
    parts = {p.name.removesuffix(".py") for p in (ROOT / "workbench").iterdir()
             if (p.suffix == ".py" and p.name != "__init__.py") or (p.is_dir() and (p / "__init__.py").exists())}
    assert parts <= set(LAYERS), f"give {sorted(parts - set(LAYERS))} a layer in tests/test_layering.py"


def test_imports_point_down():
    files = [*ROOT.glob("kernels/**/*.py"), *ROOT.glob("workbench/**/*.py")]
    bad = []
    for f in files:
        if f.name == "__init__.py" and f.parent == ROOT / "workbench":
            continue  # the package root re-exports lazily
        here = part_of(f)
        for part in imported_parts(f):
            if part in LAYERS and LAYERS[part] > LAYERS[here]:
                bad.append(f"{f.relative_to(ROOT)} ({here}, layer {LAYERS[here]}) imports {part} (layer {LAYERS[part]})")
    assert not bad, "imports that point up:\n" + "\n".join(sorted(bad))
