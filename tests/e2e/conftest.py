"""Real-browser fixtures: a real `streamlit run app.py` and Debian's chromium driven by playwright.

Chromium comes from apt (/usr/bin/chromium); `playwright install` cannot download here. Without a
browser the e2e tests skip, except when MMCRL_REQUIRE_BROWSER=1 (CI), where they fail instead.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("MMCRL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class AppServer:
    url: str
    home: Path
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_app(home: Path, extra_env: dict | None = None, timeout: float = 60) -> AppServer:
    home.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log_path = home / "streamlit.log"
    env = {**os.environ, "MMCRL_HOME": str(home), "OMP_NUM_THREADS": "1", **(extra_env or {})}
    process = subprocess.Popen(
        [
            sys.executable, "-m", "streamlit", "run", "app.py",
            "--server.port", str(port), "--server.address", "127.0.0.1",
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited early:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return AppServer(url=url, home=home, process=process, log_path=log_path)
        except OSError:
            time.sleep(0.3)
    stop_app(process)
    raise RuntimeError(f"streamlit did not become healthy in {timeout}s:\n{log_path.read_text()}")


def stop_app(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="session", autouse=True)
def _require_browser(request):
    if not any(item.get_closest_marker("e2e") for item in request.session.items):
        return
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)"
        if os.environ.get("MMCRL_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright hook: use Debian's chromium, headless, with no network chatter."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "headless": True, "args": CHROMIUM_ARGS}


def warm_up(browser, server: AppServer) -> None:
    """Open the entry page once so app.py's st.navigation is registered.

    Streamlit treats a pages/ folder next to the entry script as a v1 multipage app until the
    entry script has run once in the server process; a first visit straight to /data would run
    pages/data.py without app.py (no sidebar). Users start at the root URL; so do the tests.
    """
    page = browser.new_page()
    try:
        page.goto(server.url)
        wait_for_app(page)
        page.get_by_text("Workflow").wait_for(timeout=30_000)
    finally:
        page.close()


@pytest.fixture(scope="module")
def app_server(tmp_path_factory, browser):
    """A running app on a free loopback port, with its own empty workspace at .home."""
    server = start_app(tmp_path_factory.mktemp("e2e") / "workspace")
    warm_up(browser, server)
    yield server
    stop_app(server.process)


def wait_for_app(page, timeout: float = 30_000) -> None:
    """Wait until Streamlit has finished running the script for the current page."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout)
    page.wait_for_function(
        """() => {
            const app = document.querySelector('[data-testid="stApp"]');
            return app && app.getAttribute('data-test-script-state') !== 'running';
        }""",
        timeout=timeout,
    )


@pytest.fixture
def app_ready():
    """Returns wait_for_app, for tests that cannot import conftest directly."""
    return wait_for_app
