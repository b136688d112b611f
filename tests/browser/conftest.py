"""Fixtures for the browser test: a JupyterLab server and headless Chromium, both always shut down.

Nothing here downloads a browser: Playwright drives Debian's /usr/bin/chromium (CI: `apt-get install -y
chromium`). Without it, or without the `playwright` package, the browser test is skipped with a message.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


class Lab:
    def __init__(self, url: str, token: str, root: Path):
        self.url, self.token, self.root = url, token, root

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/lab/tree/{name}?token={self.token}"


@pytest.fixture
def lab(tmp_path, artifacts):
    """JupyterLab on a free loopback port with a random token, serving `tmp_path`; its own config dirs."""
    token, port = secrets.token_hex(16), _free_port()
    jupyter = Path(sys.executable).parent / "jupyter"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        "JUPYTER_CONFIG_DIR": str(tmp_path / ".jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / ".jupyter-runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / ".lab-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / ".lab-workspaces"),
    }
    cmd = [
        str(jupyter),
        "lab",
        "--no-browser",
        f"--IdentityProvider.token={token}",
        f"--port={port}",
        "--ServerApp.ip=127.0.0.1",
        "--ServerApp.port_retries=0",
        "--allow-root",  # CI containers run as root
        f"--ServerApp.root_dir={tmp_path}",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run cells through Lab's own commands
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]
    # No "would you like news?" toast over the page (and no fetch of it).
    settings = tmp_path / ".lab-settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    settings.parent.mkdir(parents=True)
    settings.write_text('{"fetchNews": "false", "checkForUpdates": false}')
    log = open(artifacts / "jupyterlab.log", "w")  # closed in the finally below
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                pytest.fail(f"jupyter lab exited with {server.returncode}; see {artifacts / 'jupyterlab.log'}")
            try:
                request = urllib.request.Request(f"{url}/api/status", headers={"Authorization": f"token {token}"})
                with urllib.request.urlopen(request, timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not answer on {url} within 90 s")
            time.sleep(0.5)
        yield Lab(url, token, tmp_path)
    finally:
        # The server and its kernels share the session started above: stop that process group only.
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            if server.poll() is not None:
                break
            try:
                os.killpg(server.pid, sig)
                server.wait(timeout=wait)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(server.pid, signal.SIGKILL)  # kernels left behind by a server that exited on its own
        except ProcessLookupError:
            pass
        log.close()


@pytest.fixture
def browser():
    """Headless Debian Chromium driven by Playwright; closed even when the test fails."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install it with `apt-get install -y chromium` to run the browser test")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    playwright = sync_api.sync_playwright().start()
    chromium = None
    try:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
    finally:
        if chromium is not None:
            chromium.close()
        playwright.stop()
