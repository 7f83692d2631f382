"""The package as pip installs it: every package folder listed in pyproject.toml, kernels/ installed as
workbench.kernels and as nothing else, no symlinks in the repository; and (integration) an sdist built from the
checkout's files, installed non-editable into a fresh venv, whose `workbench info`, `demo`, `case-study` and
`app` work from a directory that is not the checkout.

The fresh venv reuses the running interpreter's dependencies through a .pth file (nothing is downloaded) and
gets only this package: pip install --no-deps --no-build-isolation --no-index.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from serving import free_port, serving

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_ROOTS = {"workbench": ROOT / "workbench", "workbench.kernels": ROOT / "kernels"}  # pyproject's package-dir


def tracked_files() -> list[str]:
    """The checkout's files as git sees them (tracked, and untracked but not ignored)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout")
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                         check=True).stdout.decode()
    return [f for f in out.split("\0") if f]


def pyproject_packages() -> list[str]:
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]


def test_pyproject_lists_every_package_folder():
    found = set()
    for name, folder in PACKAGE_ROOTS.items():
        for init in folder.rglob("__init__.py"):
            if "__pycache__" not in init.parts:
                rel = init.parent.relative_to(folder).parts
                found.add(".".join((name, *rel)))
    if (ROOT / "workbench" / "kernels").exists():
        found.discard("workbench.kernels")  # counted once, from kernels/
    listed = set(pyproject_packages())
    assert not found - listed, (f"add {sorted(found - listed)} to [tool.setuptools] packages in pyproject.toml, "
                                "or a non-editable install leaves them out")
    assert not listed - found, f"pyproject.toml lists packages with no folder: {sorted(listed - found)}"


def test_workbench_kernels_comes_from_this_checkout():
    """An editable install of another checkout (or one from before kernels/ was mapped) would give this checkout's
    workbench another checkout's kernels, or none."""
    import workbench

    if Path(workbench.__file__).resolve().parent != ROOT / "workbench":
        pytest.skip(f"workbench is imported from {workbench.__file__}, not this checkout")
    try:
        import workbench.kernels
    except ModuleNotFoundError:
        pytest.fail(f"no workbench.kernels: pip install -e . from {ROOT} (kernels/ is mapped by the install)")
    assert Path(workbench.kernels.__file__).resolve().parent == ROOT / "kernels", (
        f"workbench.kernels comes from {workbench.kernels.__file__}: pip install -e . from {ROOT}")


def test_no_symlinks_in_the_repository():
    tracked_files()  # skips outside a git checkout
    modes = subprocess.run(["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    links = [line.split("\t", 1)[1] for line in modes.splitlines() if line.startswith("120000")]
    assert not links, f"symlinks do not survive wheels and sdists: {links}"


def test_nothing_imports_top_level_kernels():
    """kernels/ is workbench.kernels; `import kernels` only finds the folder from the checkout root (and would
    load a second copy of every class), so nothing may rely on it."""
    pattern = re.compile(r"^[\s\"]*(?:import|from)\s+kernels\b", re.M)  # a quote: a notebook's source line
    offenders = []
    for rel in tracked_files():
        if rel.endswith((".py", ".ipynb", ".md", ".sh")) and (ROOT / rel).is_file():
            text = (ROOT / rel).read_text(errors="replace")
            offenders += [f"{rel}: {m.group(0).strip()}" for m in pattern.finditer(text)]
    assert not offenders, f"import workbench.kernels instead: {offenders}"


# ---------------------------------------------------------------------- a fresh non-editable install
def run(argv: list, cwd: Path, timeout: float = 300, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if ok:
        assert proc.returncode == 0, f"{argv} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def copy_checkout(dest: Path) -> Path:
    for rel in tracked_files():
        if os.path.lexists(ROOT / rel):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel, follow_symlinks=False)
    return dest


def fresh_venv(venv: Path) -> tuple[Path, Path]:
    """(python, site-packages) of a new venv that sees the running interpreter's dependencies (pip and setuptools
    included) through a .pth file: their site-packages folders only, whose own .pth files (an editable finder of
    the checkout) do not run there."""
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=venv.parent)
    python = venv / "bin" / "python"
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=venv.parent)
                .stdout.strip())
    deps = [p for p in sys.path if ("site-packages" in p or "dist-packages" in p) and os.path.isdir(p)]
    (site / "_running_interpreter_deps.pth").write_text("\n".join(deps) + "\n")
    return python, site


@pytest.mark.integration
def test_editable_install_maps_kernels_into_workbench(tmp_path):
    """From the checkout root workbench/ is found on sys.path; workbench.kernels comes from setuptools' finder."""
    src = copy_checkout(tmp_path / "src")
    python, _ = fresh_venv(tmp_path / "venv")
    run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-e", src], cwd=src)
    for cwd in (src, tmp_path):
        out = run([python, "-c", "import workbench, workbench.kernels as k; print(workbench.__file__, k.__file__)"],
                  cwd=cwd).stdout.split()
        assert out == [str(src / "workbench" / "__init__.py"), str(src / "kernels" / "__init__.py")]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv python, venv bin, a work directory outside the checkout, site-packages) after installing an sdist
    built from the checkout's files."""
    tmp = tmp_path_factory.mktemp("install")
    src = copy_checkout(tmp / "src")
    python, site = fresh_venv(tmp / "venv")
    venv = tmp / "venv"
    dist = tmp / "dist"
    run([python, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(dist)!r})"], cwd=src)
    (sdist,) = dist.glob("*.tar.gz")
    run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", sdist], cwd=tmp)
    work = tmp / "work"
    work.mkdir()
    return python, venv / "bin", work, site


@pytest.mark.integration
def test_installed_package_is_self_contained(installed):
    python, _, work, site = installed
    probe = ("import importlib.util, workbench, workbench.kernels as k; "
             "from workbench.app_support.launch import APP_SCRIPT; "
             "print(workbench.__file__); print(k.__file__); print(APP_SCRIPT); "
             "print(importlib.util.find_spec('kernels') is None); print(k.delta_rule.__module__)")
    package, kernels, app_script, no_top_level, module = run([python, "-c", probe], cwd=work).stdout.split()
    assert Path(package).is_relative_to(site) and Path(kernels) == site / "workbench" / "kernels" / "__init__.py"
    assert (site / "workbench" / "kernels" / "README.md").is_file()
    assert no_top_level == "True" and module == "workbench.kernels.delta_rule"
    assert Path(app_script) == site / "workbench" / "streamlit_app" / "main.py"
    assert sorted(p.name for p in (site / "workbench" / "streamlit_app" / "app_pages").glob("*.py")) == sorted(
        p.name for p in (ROOT / "workbench" / "streamlit_app" / "app_pages").glob("*.py"))
    assert not (site / "kernels").exists() and not (site / "case_studies").exists()


@pytest.mark.integration
def test_installed_cli_info_demo_and_case_study(installed):
    _, bin_dir, work, site = installed
    info = run([bin_dir / "workbench", "info"], cwd=work).stdout
    assert f"checkpoint {site / 'workbench' / 'checkpoints' / 'toy-delta'}" in info and "recipe: toy-delta" in info
    demo = run([bin_dir / "workbench", "demo"], cwd=work).stdout
    assert f"checkpoint {site / 'workbench' / 'checkpoints' / 'toy-delta'}" in demo and "hook_embed" in demo
    assert "Reproduce a case study" in run([bin_dir / "workbench", "case-study", "--help"], cwd=work).stdout
    res = run([bin_dir / "workbench", "case-study", "mqar", "--quick"], cwd=work, ok=False)
    assert res.returncode == 2 and "source checkout" in res.stderr and len(res.stderr.strip().splitlines()) == 1


@pytest.mark.integration
def test_installed_app_runs_and_serves(installed):
    python, bin_dir, work, _ = installed
    smoke = ("from streamlit.testing.v1 import AppTest; from workbench.app_support.launch import APP_SCRIPT; "
             "at = AppTest.from_file(str(APP_SCRIPT), default_timeout=120).run(); "
             "assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]; "
             "at.switch_page('app_pages/attention.py').run(); "
             "assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]; print('ok')")
    assert run([python, "-c", smoke], cwd=work).stdout.strip().endswith("ok")

    port = free_port()
    command = [bin_dir / "workbench", "app", "--headless", "--port", str(port), "--address", "127.0.0.1"]
    with serving(command, port, work, timeout=60) as url:
        with urllib.request.urlopen(url + "/", timeout=10) as r:
            assert r.status == 200 and b"<noscript>" in r.read()
