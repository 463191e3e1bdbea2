"""A page in headless Chromium: its screenshot, its console errors, how much of it is ink.

Chromium (Debian's ``chromium`` package) runs under the supervisor
(:class:`~connectsw.gates.process.Background`: its own process group, ended
afterwards) with a fresh profile, and is driven over the Chrome DevTools
Protocol (https://chromedevtools.github.io/devtools-protocol/) with aiohttp's
websocket client, already a dependency: no Node and no driver download
(playwright would fetch its own browser build). The protocol client is our own
and small: commands by id, events by method, flat sessions
(``Target.attachToTarget`` with ``flatten``).

Console errors are ``Runtime.consoleAPICalled`` of type error/assert,
``Runtime.exceptionThrown`` (uncaught exceptions) and ``Log.entryAdded`` at level
error (failed loads, CSP, ...), except the browser's own ``/favicon.ico`` request.
The screenshot's pixels are counted by Chromium itself (the PNG drawn on a canvas
in a second, blank tab): the page is blank when fewer than :data:`MIN_INK` of its
pixels differ from its most common colour.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectsw.core import supervisor
from connectsw.gates.base import GateContext
from connectsw.gates.process import Background

#: Flags every run uses: headless, no sandbox (containers, root), no GPU, and nothing
#: that reaches the network by itself (updates, sync, field trials, QUIC probes).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)
#: Fraction of the screenshot's pixels that must differ from its most common colour.
MIN_INK = 0.001
WIDTH, HEIGHT = 1280, 800

_COUNT_PIXELS = """
(async (src) => {
  const img = new Image();
  img.src = src;
  await img.decode();
  const canvas = document.createElement('canvas');
  canvas.width = img.width; canvas.height = img.height;
  const g = canvas.getContext('2d');
  g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, canvas.width, canvas.height).data;
  const counts = new Map();
  for (let i = 0; i < d.length; i += 4) {
    const k = (d[i] << 16) | (d[i + 1] << 8) | d[i + 2];
    counts.set(k, (counts.get(k) || 0) + 1);
  }
  let top = 0;
  for (const v of counts.values()) if (v > top) top = v;
  return {total: d.length / 4, differing: d.length / 4 - top, colours: counts.size};
})
"""


class ChromiumError(Exception):
    """Chromium could not be started or driven (the message says what happened)."""


@dataclass
class Shot:
    """What loading a page showed: its screenshot (PNG), console errors and pixel counts."""

    png: bytes = b""
    errors: list[str] = field(default_factory=list)
    total: int = 0
    differing: int = 0
    colours: int = 0
    navigation_error: str = ""
    seconds: float = 0.0

    @property
    def blank(self) -> bool:
        """True when fewer than :data:`MIN_INK` of the pixels differ from the background."""
        return self.total == 0 or self.differing < MIN_INK * self.total


class _Cdp:
    """Commands and events over one DevTools websocket."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    async def read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data:
                fut = self.pending.pop(data["id"], None)
                if fut is not None and not fut.done():
                    if "error" in data:
                        fut.set_exception(ChromiumError(str(data["error"].get("message"))))
                    else:
                        fut.set_result(data.get("result", {}))
            else:
                self.events.append(data)
                self.arrived.set()
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(ChromiumError("the browser closed the connection"))

    async def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> Any:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = fut
        await self.ws.send_str(json.dumps(message))
        return await fut

    async def wait_for(self, method: str, session: str) -> None:
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event.get("method") == method and event.get("sessionId") == session:
                    return
            seen = len(self.events)
            self.arrived.clear()
            await self.arrived.wait()

    def console_errors(self, session: str) -> list[str]:
        found = []
        for event in self.events:
            if event.get("sessionId") != session:
                continue
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                args = params.get("args", [])
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in args)
                found.append(f"console.{params['type']}: {text}")
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                exc = details.get("exception", {})
                text = exc.get("description") or details.get("text", "")
                found.append(f"uncaught: {text.splitlines()[0] if text else 'exception'}")
            elif method == "Log.entryAdded":
                entry = params.get("entry", {})
                url = str(entry.get("url", ""))
                if entry.get("level") == "error" and not url.endswith("/favicon.ico"):
                    found.append(f"{entry.get('source', 'log')}: {entry.get('text', '')} {url}")
        return [" ".join(f.split()) for f in found]


async def _drive(port: int, path: str, url: str, settle: float) -> Shot:
    import aiohttp

    shot = Shot()
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=256 * 1024 * 1024) as ws,
    ):
        cdp = _Cdp(ws)
        reader = asyncio.create_task(cdp.read())
        try:
            target = await cdp.send("Target.createTarget", {"url": "about:blank"})
            attached = await cdp.send(
                "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
            )
            sid = attached["sessionId"]
            for method in ("Page.enable", "Runtime.enable", "Log.enable"):
                await cdp.send(method, session=sid)
            nav = await cdp.send("Page.navigate", {"url": url}, sid)
            shot.navigation_error = str(nav.get("errorText") or "")
            if not shot.navigation_error:
                await cdp.wait_for("Page.loadEventFired", sid)
                await asyncio.sleep(settle)  # late scripts and fetches report their errors
            shot.errors = cdp.console_errors(sid)
            captured = await cdp.send("Page.captureScreenshot", {"format": "png"}, sid)
            shot.png = base64.b64decode(captured["data"])
            # Count the pixels in a blank tab: the page's own scripts and CSP stay out of it.
            blank = await cdp.send("Target.createTarget", {"url": "about:blank"})
            counter = await cdp.send(
                "Target.attachToTarget", {"targetId": blank["targetId"], "flatten": True}
            )
            source = json.dumps("data:image/png;base64," + captured["data"])
            counted = await cdp.send(
                "Runtime.evaluate",
                {
                    "expression": f"{_COUNT_PIXELS}({source})",
                    "awaitPromise": True,
                    "returnByValue": True,
                },
                counter["sessionId"],
            )
            value = counted.get("result", {}).get("value") or {}
            shot.total = int(value.get("total", 0))
            shot.differing = int(value.get("differing", 0))
            shot.colours = int(value.get("colours", 0))
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
    return shot


def screenshot(
    ctx: GateContext, chromium: str, url: str, deadline: float, settle: float = 0.5
) -> Shot:
    """Load ``url`` in a fresh headless Chromium and take its screenshot.

    ``deadline`` (:func:`time.monotonic`) bounds everything; Chromium's whole
    process group is ended before this returns and its profile folder removed.
    Raises :class:`ChromiumError` (cannot start, timed out, protocol error) or
    :class:`~connectsw.core.supervisor.SupervisorError` (not executable).
    """
    started = time.monotonic()
    profile = Path(tempfile.mkdtemp(prefix="connectsw-chromium-"))
    argv = [
        chromium,
        *FLAGS,
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},{HEIGHT}",
        "about:blank",
    ]
    browser = Background(ctx, argv, env=supervisor.agent_env(), deadline=deadline)
    try:
        browser.start()
        active = profile / "DevToolsActivePort"
        while not active.is_file() or len(active.read_text().splitlines()) < 2:
            if not browser.running:
                last = " ".join(browser.output().strip().splitlines()[-3:])
                raise ChromiumError(f"chromium exited before it listened: {last}"[:500])
            if time.monotonic() >= deadline:
                raise ChromiumError("chromium did not start in time")
            if reason := ctx.stopped():
                raise ChromiumError(f"stopped: {reason}")
            time.sleep(0.05)
        port_line, path = active.read_text().splitlines()[:2]
        try:
            shot = asyncio.run(
                asyncio.wait_for(
                    _drive(int(port_line), path, url, settle),
                    timeout=max(0.1, deadline - time.monotonic()),
                )
            )
        except Exception as exc:  # the browser was stopped, timed out, or broke the protocol
            if reason := ctx.stopped():
                raise ChromiumError(f"stopped: {reason}") from None
            if isinstance(exc, TimeoutError):
                raise ChromiumError("the page did not load in time") from None
            if isinstance(exc, ChromiumError):
                raise
            raise ChromiumError(f"cannot talk to chromium: {type(exc).__name__}: {exc}") from None
        shot.seconds = time.monotonic() - started
        return shot
    finally:
        browser.stop()
        shutil.rmtree(profile, ignore_errors=True)
