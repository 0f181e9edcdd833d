"""Headless Chromium driven over the DevTools protocol (websockets, a dependency of Streamlit):
open a page, wait until a JavaScript condition holds, click, take a screenshot. Enough for the
app's browser test without Selenium or Playwright."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from websockets.sync.client import connect

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
)  # fmt: skip


def chromium() -> str | None:
    """The Chromium executable, if one is installed."""
    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
    return next((path for path in map(shutil.which, names) if path), None)


class Browser:
    """One headless Chromium with a fresh profile, and its first tab."""

    def __init__(self, width: int = 1500, height: int = 2000, timeout: float = 60):
        self.profile = tempfile.TemporaryDirectory(
            prefix="autohm-chromium-", ignore_cleanup_errors=True
        )
        command = [chromium(), *FLAGS, f"--user-data-dir={self.profile.name}",
                   "--remote-debugging-port=0", f"--window-size={width},{height}",
                   "--hide-scrollbars", "about:blank"]  # fmt: skip
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (a full pipe would block Chromium)
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=self.log)
        try:
            port = self._port(timeout)
        except RuntimeError:
            self.process.kill()
            raise
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as reply:
            page = next(t for t in json.load(reply) if t["type"] == "page")
        self.exits = contextlib.ExitStack()
        self.socket = self.exits.enter_context(
            connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=timeout)
        )
        self.ids = itertools.count(1)

    def _port(self, timeout: float) -> int:
        """The DevTools port Chromium chose (it writes it into the profile)."""
        marker = Path(self.profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not marker.is_file() or not marker.read_text().strip():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.log.seek(0)
                error = self.log.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"chromium did not start: {error}")
            time.sleep(0.1)
        return int(marker.read_text().split()[0])

    def call(self, method: str, **params) -> dict:
        """One DevTools command; its result."""
        message_id = next(self.ids)
        self.socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.socket.recv(timeout=60))
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def open(self, url: str) -> None:
        """Navigate to `url`."""
        self.call("Page.navigate", url=url)

    def wait_for(self, expression: str, timeout: float = 60) -> bool:
        """Poll until `expression` is truthy; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.evaluate(expression):
                return True
            time.sleep(0.25)
        return False

    def screenshot(self, path: Path) -> Path:
        """The viewport as a PNG file."""
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        """Quit Chromium and remove its profile."""
        with contextlib.suppress(Exception):  # already gone: terminated below
            self.call("Browser.close")
        self.exits.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()
        self.profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
