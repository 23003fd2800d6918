"""Headless Chromium over its DevTools protocol: open a page, collect console errors, measure it, screenshot it."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
from itertools import count
from pathlib import Path
from urllib.request import urlopen

# What a test asks of a loaded page: its sections, gallery cards, and every image's load state.
PROBE = """JSON.stringify({
  sections: [...document.querySelectorAll('section')].map(s => s.id),
  cards: document.querySelectorAll('.card').length,
  dropped: document.querySelectorAll('.card.drop').length,
  videos: document.querySelectorAll('video').length,
  audios: document.querySelectorAll('audio').length,
  plots: document.querySelectorAll('img.plot').length,
  dropFrames: document.querySelectorAll('.card.drop img.frame').length,
  broken: [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt || i.src.slice(0, 40)),
  images: document.images.length,
  width: document.documentElement.scrollWidth,
  height: document.documentElement.scrollHeight,
})"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def visit(page: Path, shot: Path, width: int = 1400, timeout: float = 120) -> dict:
    """Load `page` in a fresh headless Chromium; returns PROBE's answer plus `errors` (console errors and uncaught
    exceptions) and writes a full-page PNG to `shot`."""
    from websockets.sync.client import connect

    port, ids = free_port(), count(1)
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.Popen(
            [
                chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                f"--user-data-dir={profile}",
                f"--remote-debugging-port={port}",
                f"--window-size={width},900",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            end = time.monotonic() + timeout
            while True:  # a loaded machine starts Chromium slowly: wait for its endpoint, up to the timeout
                try:
                    tabs = json.load(urlopen(f"http://127.0.0.1:{port}/json", timeout=5))
                    url = next(t["webSocketDebuggerUrl"] for t in tabs if t["type"] == "page")
                    break
                except (OSError, StopIteration):
                    if time.monotonic() > end or proc.poll() is not None:
                        raise RuntimeError("headless Chromium did not start") from None
                    time.sleep(0.5)
            errors: list[str] = []
            with connect(url, max_size=None, open_timeout=timeout) as ws:

                def call(method: str, **params):
                    i = next(ids)
                    ws.send(json.dumps({"id": i, "method": method, "params": params}))
                    while True:
                        m = json.loads(ws.recv(timeout=max(end - time.monotonic(), 1)))
                        if m.get("method") == "Runtime.consoleAPICalled" and m["params"]["type"] == "error":
                            args = m["params"]["args"]
                            errors.append(" ".join(str(a.get("value", a.get("description"))) for a in args))
                        elif m.get("method") == "Runtime.exceptionThrown":
                            errors.append(m["params"]["exceptionDetails"]["text"])
                        elif m.get("method") == "Log.entryAdded" and m["params"]["entry"]["level"] == "error":
                            errors.append(m["params"]["entry"]["text"])
                        elif m.get("method") == "Page.loadEventFired":
                            loaded.append(True)
                        if m.get("id") == i:
                            if "error" in m:
                                raise RuntimeError(f"{method}: {m['error']}")
                            return m["result"]

                loaded: list[bool] = []
                for domain in ("Page", "Runtime", "Log"):
                    call(f"{domain}.enable")
                call("Page.navigate", url=page.resolve().as_uri())
                while not loaded:
                    call("Runtime.evaluate", expression="1")  # pumps events until the load event came
                    time.sleep(0.2)
                    if time.monotonic() > end:
                        raise RuntimeError(f"{page}: not loaded within {timeout} s")
                info = json.loads(call("Runtime.evaluate", expression=PROBE, returnByValue=True)["result"]["value"])
                for _ in range(2):  # the page as tall as its content: layout may change with the viewport
                    size = {"width": width, "height": info["height"], "deviceScaleFactor": 1, "mobile": False}
                    call("Emulation.setDeviceMetricsOverride", **size)
                    height = "Math.ceil(document.body.getBoundingClientRect().bottom)"
                    info["height"] = call("Runtime.evaluate", expression=height, returnByValue=True)["result"]["value"]
                png = call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
                shot.write_bytes(base64.b64decode(png))
            return {**info, "errors": errors}
        finally:
            proc.kill()
            proc.wait()
