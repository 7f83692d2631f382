"""How the browser app is started: ``streamlit run`` on the app installed with the package, from any directory."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from ..paths import PACKAGE_DIR
from .sources import MAX_UPLOAD_MB

APP_SCRIPT = PACKAGE_DIR / "streamlit_app" / "main.py"  # its pages: streamlit_app/app_pages/

# Streamlit reads .streamlit/config.toml from the current directory only, so `workbench app` passes these as flags
# wherever it is started; the checkout's .streamlit/config.toml (for `streamlit run app.py`) holds the same.
APP_OPTIONS = {
    "browser.gatherUsageStats": "false",  # nothing leaves the machine
    # No file watching: on a busy directory (a .venv, training runs writing files) the watcher's inotify queue
    # overflows and it re-walks the tree, costing more CPU than the app itself. Developers editing pages can
    # pass --server.fileWatcherType auto to streamlit run.
    "server.fileWatcherType": "none",
    "server.showEmailPrompt": "false",  # no first-run terminal prompt: just serve
    # No full gc.collect() after every rerun: with torch, transformer_lens, pandas and plotly loaded it takes
    # about 0.2 s of CPU each time, most of the time a slider move costs. Python's own collector still runs.
    "runner.postScriptGC": "false",
    "client.toolbarMode": "minimal",  # no deploy button
    # Served to this machine only unless `workbench app --address` says otherwise (the app reads local
    # directories and runs uploaded models: not something to offer a network by default).
    "server.address": "127.0.0.1",
    # Streamlit refuses larger files before they reach us; sources.check_upload_size says why in the sidebar.
    "server.maxUploadSize": str(MAX_UPLOAD_MB),
}

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def find_app_script(script: Optional[Path] = None) -> Path:
    """The app's main script, or a FileNotFoundError that says where it should be."""
    script = APP_SCRIPT if script is None else Path(script)
    if not script.is_file():
        raise FileNotFoundError(
            f"the app script {script} is missing: it is package data of workbench (streamlit_app/); reinstall the "
            "package (pip install --force-reinstall --no-deps fastweight-workbench, or pip install -e . in a checkout)"
        )
    return script


def streamlit_argv(script: Path, port: int = 8501, address: Optional[str] = None, headless: bool = False) -> list[str]:
    """The command line that serves ``script`` on ``port`` with :data:`APP_OPTIONS`, bound to ``address``
    (default 127.0.0.1: this machine only; ``0.0.0.0`` serves every network interface). The printed address is
    given, so nothing leaves the machine (streamlit would otherwise look up its external IP)."""
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise ValueError(f"port must be an int in [1, 65535], got {port!r}")
    address = address or APP_OPTIONS["server.address"]
    if any(c.isspace() for c in address):
        raise ValueError(f"address must be a host name or IP address such as 127.0.0.1 or 0.0.0.0, got {address!r}")
    shown = "localhost" if address in LOOPBACK or address in ("0.0.0.0", "::") else address
    argv = [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
            "--server.headless", "true" if headless else "false", "--browser.serverAddress", shown]
    for key, value in {**APP_OPTIONS, "server.address": address}.items():
        argv += [f"--{key}", value]
    return argv


def exposure_warning(address: Optional[str]) -> Optional[str]:
    """What to tell the user when ``address`` serves the app beyond this machine (None when it does not)."""
    if not address or address in LOOPBACK:
        return None
    return (f"warning: serving on {address}: anyone who can reach this machine on that interface can use the app, "
            "read the model directories it can open and make it run uploaded models. It has no login; put it "
            "behind an authenticating proxy or an SSH tunnel (ssh -L 8501:localhost:8501 host) instead where you can.")
