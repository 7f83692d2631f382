"""The app under a little load: benchmarks/app_load.py with 2 browser sessions for 20 s against `workbench app`
served with its defaults. No interaction may fail, the server's memory stays bounded, and it listens on this
machine only. The full run (8 sessions, 180 s) and its figures are in the README's Reliability section.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import app_load  # noqa: E402

RSS_BOUND_MB = 2048  # the server with torch and a few small models takes about 0.5 GB; 2 GB means something leaks


def test_errors_reaching_the_browser_are_counted():
    """The driver's error detector sees an exception element, an error alert and a compile error, and lets the
    sidebar's expected upload prompt pass (so that '0 errors' from the load run means something)."""
    from streamlit.proto.Alert_pb2 import Alert
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    session = app_load.Session(0)

    def delta(fill) -> bytes:
        msg = ForwardMsg()
        fill(msg.delta.new_element)
        return msg.SerializeToString()

    session.on_frame(ForwardMsg(new_session={}).SerializeToString())
    session.on_frame(delta(lambda e: (e.alert.__setattr__("body", "upload both files of a checkpoint"),
                                      e.alert.__setattr__("format", Alert.ERROR))))
    session.on_frame(delta(lambda e: e.markdown.__setattr__("body", "fine")))
    assert session.errors == [] and session.started == 1
    session.on_frame(delta(lambda e: (e.exception.__setattr__("type", "KeyError"),
                                      e.exception.__setattr__("message", "'layer'"))))
    session.on_frame(delta(lambda e: (e.alert.__setattr__("body", "the model config is not valid"),
                                      e.alert.__setattr__("format", Alert.ERROR))))
    session.on_frame(ForwardMsg(script_finished=ForwardMsg.FINISHED_WITH_COMPILE_ERROR).SerializeToString())
    session.on_frame("a text frame")
    assert session.finished == 1
    assert session.errors == ["exception: KeyError: 'layer'", "error alert: the model config is not valid",
                              "a run ended with a compile error"]
    assert app_load.quantile([3.0, 1.0, 2.0], 0.5) == 2.0 and app_load.quantile(list(range(101)), 0.95) == 95.0


@pytest.mark.integration
def test_two_sessions_for_twenty_seconds_hold_with_no_errors(tmp_path):
    if not app_load.CHROMIUM.exists():
        pytest.skip(f"{app_load.CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    pytest.importorskip("playwright.async_api", reason="playwright is missing: pip install -e '.[dev]'")
    out = tmp_path / "load.json"
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "app_load.py"), "--sessions", "2",
                          "--duration", "20", "--json", str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.startswith("command: python benchmarks/app_load.py --sessions 2 --duration 20")
    figures = json.loads(out.read_text())
    assert figures["errors"] == 0, figures["error_list"]
    assert figures["server_log_tracebacks"] == 0
    assert figures["listening_on"] == ["127.0.0.1"]  # `workbench app` with no --address: this machine only
    kinds = figures["by_kind"]
    assert {"open the app", "page", "seed", "upload"} <= set(kinds), kinds  # every session uploads in its first round
    assert all(n >= 3 for n in figures["per_session_interactions"]), figures["per_session_interactions"]
    assert 0 < figures["p50_s"] <= figures["p95_s"] <= figures["max_s"]
    assert figures["server_runs"] >= len(figures["per_session_interactions"])  # rerun requests timed on the wire
    assert 0 < figures["server_p50_s"] <= figures["server_p95_s"]
    assert figures["rss_idle_mb"] < figures["rss_peak_mb"] < RSS_BOUND_MB
