"""How the browser app is started: ``streamlit run app.py`` from the source checkout."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from ..paths import PACKAGE_DIR

APP_SCRIPT = PACKAGE_DIR.parent / "app.py"


def find_app_script(script: Optional[Path] = None) -> Path:
    """The app's main script, or a FileNotFoundError that says where it should be."""
    script = APP_SCRIPT if script is None else Path(script)
    if not script.is_file():
        raise FileNotFoundError(
            f"the app script {script} is missing: the app (app.py and app_pages/) lives in the source "
            "checkout; run this from a clone of the repository installed with `pip install -e .`"
        )
    return script


def streamlit_argv(script: Path, port: int = 8501, address: Optional[str] = None, headless: bool = False) -> list[str]:
    """The command line that serves ``script`` on ``port``. Usage statistics are off and the printed address is
    given, so nothing leaves the machine (streamlit would otherwise look up its external IP)."""
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise ValueError(f"port must be an int in [1, 65535], got {port!r}")
    argv = [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
            "--server.headless", "true" if headless else "false", "--browser.gatherUsageStats", "false",
            "--browser.serverAddress", address or "localhost"]
    if address:
        argv += ["--server.address", address]
    return argv
