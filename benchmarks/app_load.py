"""The app under load: N browser sessions at once against one `workbench app` server, for a bounded time.

    python benchmarks/app_load.py                               # 8 sessions for 180 s
    python benchmarks/app_load.py --sessions 2 --duration 20    # a quick check (tests/test_app_load.py)

The script serves the app with `workbench app --headless --port P` (default address: this machine only) from a
temporary directory, opens N contexts of one headless Chromium (each its own Streamlit session: own cookies,
own websocket) and has every session go round the app until the time is up: each page through the sidebar's
links, the seed of the sidebar's sample, the fast-weight position slider, the edit's strength slider and mode,
and (every other round) an upload of a bundled checkpoint (a different one per session) through the sidebar's
file uploaders, then back to the shipped one. An interaction is timed from the browser action to the server's
``script_finished`` message for the run it caused, read off the session's websocket (decoded with Streamlit's
own protobufs), plus the page reporting that it is no longer running: what the user waits for, browser included.
Beside it, the server's share: from the session's rerun request leaving the browser (a ``rerun_script`` BackMsg on
the websocket) to that run's ``script_finished`` arriving. On a small machine the browser's own work (8 pages
drawing plotly charts) weighs on the first figure; the server's CPU seconds are printed too.

Errors are counted from what reaches the browser: an exception element or an error alert in a delta (the
websocket) or on the page (the DOM), a run that ends with a compile error, a run that does not finish within
``--timeout`` seconds, a websocket that closes, a page that crashes. The one error alert expected on the way
("upload both files", shown while only config.json is uploaded) is not counted. The server's resident memory
is sampled every 0.25 s (psutil); the addresses it listens on are recorded (127.0.0.1 only, by default).

Prints the command, a summary table and one row per kind of interaction; ``--json`` writes the figures.
Needs /usr/bin/chromium and playwright (as tests/test_app_browser.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import numpy as np
import psutil
from streamlit.proto.Alert_pb2 import Alert
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from workbench.paths import CHECKPOINTS_DIR

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]
PAGES = ["Attention", "Fast weights", "Recall probe", "Patch and edit", "Outliers", "K-FAC editing"]
# the sidebar's link texts (workbench/streamlit_app/main.py), after "Model and sequence", where the app opens
UPLOADS = ["toy-fwm", "toy-srwm", "mqar-delta-d128", "toy-delta-rnn", "mqar-gated-delta-d64", "toy-rec-delta",
           "mqar-linear-d64", "toy-delta-lstm"]  # session i uploads UPLOADS[i % 8]: many distinct models
EXPECTED_ALERTS = ("upload both files",)  # the sidebar's prompt while one of the two files is uploaded
IDLE = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    return app && app.getAttribute('data-test-script-state') === 'notRunning'
        && !document.querySelector('[data-testid="stSpinner"]');
}"""
DOM_ERRORS = """(expected) => {
    const found = [...document.querySelectorAll('[data-testid="stException"], [data-testid="stAlertContentError"]')]
        .map(e => e.innerText.slice(0, 300));
    return found.filter(t => !expected.some(x => t.includes(x)));
}"""


# ---------------------------------------------------------------------- the server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, workdir: Path, timeout: float = 120) -> subprocess.Popen:
    """`workbench app --headless --port port` (no --address: the default binding) in ``workdir``, once it answers."""
    log = open(workdir / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "app", "--headless", "--port", str(port)],
                            cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.read() == b"ok":
                    return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the app did not come up on port {port}:\n{(workdir / 'server.log').read_text()}")
        time.sleep(0.5)


def listening_addresses(pid: int) -> list[str]:
    """The local addresses the server process listens on (TCP)."""
    conns = psutil.Process(pid).net_connections(kind="tcp")
    return sorted({c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN})


class MemorySampler(threading.Thread):
    """The resident memory of ``pid`` and its children, sampled every ``every`` seconds until stopped."""

    def __init__(self, pid: int, every: float = 0.25):
        super().__init__(daemon=True)
        self.proc, self.every, self.samples, self.done = psutil.Process(pid), every, [], threading.Event()
        self.client_cpu = {}  # pid: CPU seconds of this script's other child processes (the browser, its driver)

    def sample_clients(self) -> None:
        for p in psutil.Process().children(recursive=True):
            if p.pid != self.proc.pid:
                try:
                    self.client_cpu[p.pid] = sum(p.cpu_times()[:2])  # user and system
                except psutil.Error:
                    pass

    def rss(self) -> int:
        procs = [self.proc] + self.proc.children(recursive=True)
        return sum(p.memory_info().rss for p in procs if p.is_running())

    def run(self) -> None:
        while not self.done.is_set():
            try:
                self.samples.append((time.monotonic(), self.rss()))
            except psutil.Error:
                return
            if len(self.samples) % 4 == 0:
                self.sample_clients()
            self.done.wait(self.every)


# ---------------------------------------------------------------------- one browser session
@dataclass
class Session:
    """What one browser session saw: its timed interactions and its errors."""
    index: int
    timings: list = field(default_factory=list)  # (kind, seconds)
    errors: list = field(default_factory=list)  # what went wrong, in words
    started: int = 0  # script runs started (new_session messages) and finished, read off the websocket
    finished: int = 0
    seen: set = field(default_factory=set)  # DOM error texts already counted
    server_times: list = field(default_factory=list)  # seconds from a rerun request sent to its run finished
    requested: Optional[float] = None  # when the first rerun request not yet answered was sent

    def on_sent(self, payload) -> None:
        if isinstance(payload, str):
            return
        try:
            msg = BackMsg.FromString(payload)
        except Exception:  # noqa: BLE001 - not a BackMsg: nothing to time
            return
        if msg.WhichOneof("type") == "rerun_script" and self.requested is None:
            self.requested = time.perf_counter()

    def on_frame(self, payload) -> None:
        if isinstance(payload, str):
            return
        try:
            msg = ForwardMsg.FromString(payload)
        except Exception:  # noqa: BLE001 - not a ForwardMsg: nothing to count
            return
        kind = msg.WhichOneof("type")
        if kind == "new_session":
            self.started += 1
        elif kind == "script_finished":
            self.finished += 1
            if self.requested is not None and msg.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                self.server_times.append(time.perf_counter() - self.requested)
                self.requested = None
            if msg.script_finished == ForwardMsg.FINISHED_WITH_COMPILE_ERROR:
                self.errors.append("a run ended with a compile error")
        elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
            element = msg.delta.new_element
            which = element.WhichOneof("type")
            if which == "exception":
                self.errors.append(f"exception: {element.exception.type}: {element.exception.message[:200]}")
            elif which == "alert" and element.alert.format == Alert.ERROR and \
                    not any(x in element.alert.body for x in EXPECTED_ALERTS):
                self.errors.append(f"error alert: {element.alert.body[:200]}")


async def settle(page, session: Session, finished_before: int, timeout: float) -> None:
    """Wait until a run that started after the action has finished, nothing runs and the page is idle."""
    deadline = time.monotonic() + timeout
    while not (session.finished > finished_before and session.finished >= session.started):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no run finished within {timeout:.0f} s")
        await asyncio.sleep(0.01)
    await page.wait_for_function(IDLE, timeout=max(1.0, deadline - time.monotonic()) * 1000, polling=20)


async def timed(page, session: Session, kind: str, action, timeout: float) -> None:
    """Do ``action`` (an awaitable factory), wait for the run it causes, record the time and any error on the page."""
    before = session.finished
    t0 = time.perf_counter()
    try:
        await action()
        await settle(page, session, before, timeout)
    except Exception as e:  # noqa: BLE001 - a timeout, a crashed page: counted, and the session goes on
        session.errors.append(f"{kind}: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
        return
    session.timings.append((kind, time.perf_counter() - t0))
    for text in await page.evaluate(DOM_ERRORS, list(EXPECTED_ALERTS)):
        if text not in session.seen:  # an error stays on the page until the next run: count it once
            session.seen.add(text)
            session.errors.append(f"{kind}: on the page: {text}")


def nav(page, title: str):
    return lambda: page.locator('[data-testid="stSidebarNav"] a').filter(has_text=title).first.click()


def slider_key(page, label: str, key: str):
    async def press():
        slider = page.locator('[data-testid="stSlider"]').filter(has_text=label).locator('[role="slider"], input[type="range"]').first
        await slider.focus()
        await page.keyboard.press(key)
    return press


def radio(page, label: str, option: str, where: str = "main"):
    scope = page.locator('[data-testid="stSidebar"]' if where == "sidebar" else '[data-testid="stMain"]')
    return lambda: scope.locator('[data-testid="stRadio"]').filter(has_text=label).get_by_text(option, exact=True).click()


def switch_radio(page, label: str, options: tuple[str, ...]):
    """Click the first of ``options`` that is not selected: a click on the selected one starts no run (and
    Streamlit resets a widget to its default when its page is left, so the selection cannot be tracked here)."""
    async def click():
        group = page.locator('[data-testid="stMain"] [data-testid="stRadio"]').filter(has_text=label)
        for option in options:
            if not await group.get_by_role("radio", name=option, exact=True).is_checked():
                await group.get_by_text(option, exact=True).click()
                return
        raise RuntimeError(f"radio {label!r}: every one of {options} is selected")
    return click


def seed(page, value: int):
    async def type_seed():
        box = page.locator('[data-testid="stSidebar"] [data-testid="stNumberInput"]').filter(has_text="Seed").locator("input")
        await box.fill(str(value))
        await box.press("Enter")
    return type_seed


def upload(page, label: str, path: Path):
    return lambda: page.locator('[data-testid="stFileUploader"]').filter(has_text=label).locator(
        'input[type="file"]').set_input_files(str(path))


async def drive(browser, url: str, session: Session, deadline: float, timeout: float, checkpoints: Path) -> None:
    """One session going round the app until ``deadline`` (time.monotonic())."""
    rng = random.Random(session.index)
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(timeout * 1000)  # a starved browser finding a widget: the same limit as a run
    page.on("websocket", lambda ws: (ws.on("framereceived", session.on_frame), ws.on("framesent", session.on_sent),
                                     ws.on("close", lambda _: session.errors.append("the websocket closed")
                                           if time.monotonic() < deadline else None)))
    page.on("crash", lambda _: session.errors.append("the page crashed"))
    await timed(page, session, "open the app", lambda: page.goto(url), timeout)
    ckpt = checkpoints / UPLOADS[session.index % len(UPLOADS)]
    rounds = 0
    while time.monotonic() < deadline:
        if rounds:  # every round starts on the overview page, where the app opens
            await timed(page, session, "page", nav(page, "Model and sequence"), timeout)
        await timed(page, session, "seed", seed(page, 1 + rounds + 1000 * session.index), timeout)  # a new seed
        if rounds % 2 == 0:  # an upload every other round (the first included), then back to the shipped checkpoint
            await timed(page, session, "upload", radio(page, "Model", "Upload a checkpoint", "sidebar"), timeout)
            await timed(page, session, "upload", upload(page, "config.json", ckpt / "config.json"), timeout)
            await timed(page, session, "upload", upload(page, "model.safetensors", ckpt / "model.safetensors"), timeout)
            caption = await page.locator('[data-testid="stSidebar"] [data-testid="stCaptionContainer"]').first.inner_text()
            if "upload: config.json + model.safetensors" not in caption:
                session.errors.append(f"upload: the sidebar shows {caption!r}, not the uploaded model")
            await timed(page, session, "page", nav(page, "Fast weights"), timeout)  # a page on the uploaded model
            await timed(page, session, "upload", radio(page, "Model", "Shipped checkpoint", "sidebar"), timeout)
        for title in PAGES:
            if time.monotonic() >= deadline:
                break
            await timed(page, session, "page", nav(page, title), timeout)
            if title == "Fast weights":
                await timed(page, session, "slider", slider_key(page, "Position t", rng.choice(["ArrowLeft", "ArrowRight"])), timeout)
            elif title == "Patch and edit":
                await timed(page, session, "slider", slider_key(page, "Strength", rng.choice(["ArrowLeft", "ArrowRight"])), timeout)
                await timed(page, session, "edit", switch_radio(page, "Mode", ("readout", "carry")), timeout)
        rounds += 1
    await context.close()


# ---------------------------------------------------------------------- the run
def quantile(xs: list, q: float) -> float:
    """The ``q`` quantile of ``xs``, linearly interpolated (numpy's default); nan when there are none."""
    return float(np.quantile(xs, q)) if len(xs) else float("nan")


async def load(url: str, n: int, duration: float, timeout: float, checkpoints: Path) -> list[Session]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            deadline = time.monotonic() + duration
            sessions = [Session(i) for i in range(n)]
            await asyncio.gather(*(drive(browser, url, s, deadline, timeout, checkpoints) for s in sessions))
        finally:
            await browser.close()
    return sessions


def main(argv: Optional[list] = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=8, help="browser sessions at once")
    ap.add_argument("--duration", type=float, default=180, help="seconds the sessions go round the app")
    ap.add_argument("--timeout", type=float, default=120, help="seconds an interaction may take before it is an error")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    if args.sessions < 1 or args.duration <= 0:
        ap.error("--sessions must be ≥ 1 and --duration > 0")
    if not CHROMIUM.exists():
        sys.exit(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    command = "python benchmarks/app_load.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"command: {command}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="app-load-"))
    port = free_port()
    server = start_server(port, workdir)
    try:
        addresses = listening_addresses(server.pid)
        sampler = MemorySampler(server.pid)
        rss_idle = sampler.rss()
        sampler.start()
        load_before, cpu0, t0 = os.getloadavg(), psutil.Process(server.pid).cpu_times(), time.monotonic()
        sessions = asyncio.run(load(f"http://127.0.0.1:{port}/", args.sessions, args.duration, args.timeout,
                                    CHECKPOINTS_DIR))
        wall, cpu1, load_after = time.monotonic() - t0, psutil.Process(server.pid).cpu_times(), os.getloadavg()
        sampler.done.set()
        sampler.join()
        alive = server.poll() is None
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log = (workdir / "server.log").read_text()
        shutil.rmtree(workdir, ignore_errors=True)
    times = [t for s in sessions for _, t in s.timings]
    server_times = [t for s in sessions for t in s.server_times]
    errors = [f"session {s.index}: {e}" for s in sessions for e in s.errors] + ([] if alive else ["the server died"])
    rss = [r for _, r in sampler.samples]
    kinds = sorted({k for s in sessions for k, _ in s.timings})
    result = {
        "command": command, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sessions": args.sessions, "duration_s": args.duration, "wall_s": round(wall, 1),
        "interactions": len(times), "p50_s": round(quantile(times, 0.5), 3), "p95_s": round(quantile(times, 0.95), 3),
        "max_s": round(max(times), 3) if times else None,
        "server_runs": len(server_times), "server_p50_s": round(quantile(server_times, 0.5), 3),
        "server_p95_s": round(quantile(server_times, 0.95), 3),
        "by_kind": {k: {"n": len(ts), "p50_s": round(quantile(ts, 0.5), 3), "p95_s": round(quantile(ts, 0.95), 3)}
                    for k in kinds for ts in [[t for s in sessions for kk, t in s.timings if kk == k]]},
        "per_session_interactions": [len(s.timings) for s in sessions],
        "rss_idle_mb": round(rss_idle / 2**20), "rss_peak_mb": round(max(rss) / 2**20) if rss else None,
        "rss_end_mb": round(rss[-1] / 2**20) if rss else None,
        "server_cpu_s": round(sum(cpu1[:2]) - sum(cpu0[:2]), 1),
        "server_cpu_per_interaction_s": round((sum(cpu1[:2]) - sum(cpu0[:2])) / max(1, len(times)), 3),
        "browser_cpu_s": round(sum(sampler.client_cpu.values()), 1),
        "errors": len(errors), "error_list": errors[:50],
        "load_average_before": [round(x, 2) for x in load_before], "load_average_after": [round(x, 2) for x in load_after],
        "cpus": os.cpu_count(), "listening_on": addresses,
        "server_log_tracebacks": log.count("Traceback"),
    }
    print(f"{'sessions':>8} {'duration s':>10} {'interactions':>12} {'p50 s':>7} {'p95 s':>7} {'max s':>7} "
          f"{'RSS idle MB':>11} {'peak MB':>8} {'end MB':>7} {'errors':>6} {'load avg (1 min) before/after':>30}")
    print(f"{args.sessions:>8} {args.duration:>10.0f} {len(times):>12} {result['p50_s']:>7.3f} {result['p95_s']:>7.3f} "
          f"{result['max_s'] or float('nan'):>7.3f} {result['rss_idle_mb']:>11} {result['rss_peak_mb']:>8} "
          f"{result['rss_end_mb']:>7} {len(errors):>6} {load_before[0]:>14.2f} / {load_after[0]:<.2f}")
    print(f"\n{'interaction':<22} {'n':>5} {'p50 s':>7} {'p95 s':>7}")
    for k, v in result["by_kind"].items():
        print(f"{k:<22} {v['n']:>5} {v['p50_s']:>7.3f} {v['p95_s']:>7.3f}")
    print(f"{'request → run finished':<22} {len(server_times):>5} {result['server_p50_s']:>7.3f} {result['server_p95_s']:>7.3f}"
          "  (the websocket's rerun request to the server's script_finished: no browser rendering)")
    print(f"\nserver: listening on {', '.join(addresses)}; {result['server_cpu_s']} CPU s "
          f"({result['server_cpu_per_interaction_s']} s an interaction) over {wall:.0f} s wall on {os.cpu_count()} CPUs; "
          f"{result['server_log_tracebacks']} tracebacks in its log")
    print(f"browser (Chromium and playwright's driver): {result['browser_cpu_s']} CPU s")
    for e in errors[:20]:
        print("error:", e)
    if args.json:
        from workbench.atomic import write_json

        write_json(args.json, result, indent=1)
    return result


if __name__ == "__main__":
    main()
