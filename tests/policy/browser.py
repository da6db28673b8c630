"""Headless Chromium with JavaScript off, driven over the DevTools protocol on a pipe.

`--blink-settings=scriptEnabled=false` leaves headless Chromium's own --dump-dom and
--screenshot with nothing to run on, and `--disable-javascript` is ignored, so the test turns
scripts off the way DevTools does (Emulation.setScriptExecutionDisabled) before loading the
page, then reads the DOM and a screenshot through the protocol.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest


class Browser:
    def __init__(self, profile: Path) -> None:
        binary = shutil.which("chromium")
        if binary is None:
            pytest.fail(
                "chromium is not installed: `make deps` installs it (deploy/local/packages.txt)"
            )
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # The protocol pipe is fds 3 (commands in) and 4 (replies out) of the browser.
        self._process = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--remote-debugging-pipe",
            ],
            # dup2 makes 3 and 4 inheritable; every other descriptor stays closed on exec.
            close_fds=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=lambda: (os.dup2(to_browser_r, 3), os.dup2(from_browser_w, 4)),
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.session: str | None = None

    def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self.session is not None and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._next_id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    result: dict[str, Any] = reply["result"]
                    return result
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium closed the pipe during {method}")
            self._buffer += chunk
        raise TimeoutError(method)

    def open_without_scripts(self, url: str, width: int, height: int) -> None:
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.call("Emulation.setScriptExecutionDisabled", value=True)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        self.call("Page.enable")
        self.call("Page.navigate", url=url)
        # Wait until the document has loaded (asked through the DOM domain: no script runs).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                root = self.call("DOM.getDocument")["root"]
                html = self.call("DOM.getOuterHTML", nodeId=root["nodeId"])["outerHTML"]
            except RuntimeError:  # the document was replaced between the two calls
                root, html = {}, ""
            if root.get("documentURL") == url and "</body>" in html:
                return
            time.sleep(0.1)
        raise TimeoutError(url)

    def dom(self) -> str:
        root = self.call("DOM.getDocument", depth=-1)["root"]
        html: str = self.call("DOM.getOuterHTML", nodeId=root["nodeId"])["outerHTML"]
        return html

    def screenshot(self) -> bytes:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        return base64.b64decode(data)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close", timeout=5)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)
