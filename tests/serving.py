"""Start the app as a server for a test and wait until it answers (shared by the browser and install tests)."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(command: Sequence, port: int, cwd: Path, timeout: float = 90) -> Iterator[str]:
    """Run ``command`` (a server on 127.0.0.1:``port``) in ``cwd`` with its output in ``cwd/server.log``;
    yield its URL once ``/_stcore/health`` answers ``ok`` (fail the test with the log otherwise); stop it."""
    log_path = Path(cwd) / "server.log"
    with open(log_path, "w") as log:  # `workbench app` execs `streamlit run`: proc is the server itself
        proc = subprocess.Popen(list(command), cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.read() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the app server did not come up on {url}:\n{log_path.read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
