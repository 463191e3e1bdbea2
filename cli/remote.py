"""Server mode: the CLI as a client of ``connectsw serve`` (DESIGN.md "Local mode and
server mode").

``connectsw login`` stores the server's URL, the license key and a session token
in ``DATA_DIR/credentials.json`` (file mode 0600; the key never leaves that file
but in the ``X-License-Key`` header). Every request sends the key and the token;
a session the server no longer accepts (expired, ended) is replaced once with a
new one, transparently. HTTP through the standard library (``urllib``): no
extra dependency, no import cost for local-mode commands.

Errors become the CLI's: 404 :class:`NotFound`, 409 :class:`InvalidState`,
400/413 :class:`InvalidRequest`, 401/403/429 :class:`LicenseRefused` with the
server's stable code, an unreachable server :class:`ServerUnreachable`.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from connectsw.core.errors import (
    Cancelled,
    Conflict,
    ConnectSWError,
    ExitCode,
    InvalidState,
    NotFound,
    StoreError,
)
from connectsw.core.textfiles import os_reason
from connectsw.licensing.errors import LicenseRefused

#: Seconds a request may take before the CLI gives up on the server.
TIMEOUT = 60.0
#: Session codes after which a new session is opened with the stored key.
RELOGIN = {"invalid_session", "session_expired", "session_ended"}


class ServerUnreachable(ConnectSWError):
    """The configured server did not answer."""

    code = "server_unreachable"
    exit_code = ExitCode.ERROR


class InvalidRequest(ConnectSWError):
    """The server refused the request as invalid (400, 413)."""

    code = "invalid_request"
    exit_code = ExitCode.INVALID_INPUT


@dataclass
class Credentials:
    """What ``login`` stores: server URL, license key, current session."""

    server: str
    key: str
    token: str = ""
    session_id: str = ""

    @staticmethod
    def path(data_dir: Path) -> Path:
        return data_dir.expanduser() / "credentials.json"

    @classmethod
    def load(cls, data_dir: Path) -> Credentials | None:
        """The stored credentials, or None when not logged in."""
        path = cls.path(data_dir)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**{k: str(data[k]) for k in ("server", "key", "token", "session_id")})
        except (FileNotFoundError, NotADirectoryError):  # never logged in (here)
            return None
        except (IsADirectoryError, UnicodeDecodeError):
            raise ConnectSWError(
                f"{path} is not readable credentials: `connectsw login` again"
            ) from None
        except OSError as exc:  # the data dir's path (a name too long...): core/textfiles.py
            raise StoreError(f"cannot read {path}: {os_reason(exc)}") from None
        except (ValueError, KeyError, TypeError):
            raise ConnectSWError(
                f"{path} is not readable credentials: `connectsw login` again"
            ) from None

    def save(self, data_dir: Path) -> Path:
        """Write the file with mode 0600 (created so, never widened for a moment)."""
        path = self.path(data_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".credentials.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(asdict(self), fh)
        os.replace(tmp, path)
        return path

    @classmethod
    def forget(cls, data_dir: Path) -> bool:
        path = cls.path(data_dir)
        existed = path.exists()
        path.unlink(missing_ok=True)
        return existed


class RateLimited(ConnectSWError):
    """The server's rate limit held for longer than the client waits (429)."""

    code = "rate_limited"
    exit_code = ExitCode.ERROR
    retry_after: float | None = None


#: A 429 whose Retry-After is at most this many seconds is waited out (3 times at most).
RETRY_AFTER_MAX = 10.0


def execution_path(execution_id: str, suffix: str = "") -> str:
    """``/v1/execution/{id}{suffix}`` with the id quoted: never another path."""
    return f"/v1/execution/{urllib.parse.quote(execution_id, safe='')}{suffix}"


def _error(status: int, body: bytes, base: str) -> ConnectSWError:
    try:
        error = json.loads(body)["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return ConnectSWError(
            f"{base} answered {status} without a ConnectSW error: is it a ConnectSW server?"
        )
    if status == 429:
        return RateLimited(message)
    if status == 404:
        return NotFound(message)
    if status == 409:
        kind = {"conflict": Conflict, "cancelled": Cancelled}.get(code, InvalidState)
        return kind(message)
    if status in (400, 413, 422):
        return InvalidRequest(message)
    if status in (401, 403, 429):
        return LicenseRefused(code, message)
    return ConnectSWError(f"the server failed: {message} ({status})")


class Remote:
    """A client of one server with stored credentials; saves a renewed session."""

    def __init__(self, credentials: Credentials, data_dir: Path) -> None:
        self.credentials = credentials
        self.data_dir = data_dir
        self.base = credentials.server.rstrip("/")

    # -- sessions -------------------------------------------------------------------
    def open_session(self) -> dict[str, Any]:
        """Exchange the key for a session token (``POST /v1/sessions``) and save it."""
        body = self._send("POST", "/v1/sessions", None, {"X-License-Key": self.credentials.key})
        self.credentials.token = body["token"]
        self.credentials.session_id = body["sessionId"]
        self.credentials.save(self.data_dir)
        return body

    def end_session(self) -> None:
        if self.credentials.session_id:
            with contextlib.suppress(ConnectSWError):
                self.call("DELETE", f"/v1/sessions/{self.credentials.session_id}", relogin=False)

    # -- requests ---------------------------------------------------------------------
    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        data: bytes | None = None,
        relogin: bool = True,
    ) -> Any:
        """One authenticated request; the decoded JSON answer (None for 204)."""
        return self._in_session(
            lambda: self._send(method, path, body, self._auth(), data=data), relogin
        )

    def stream(self, path: str, headers: dict[str, str] | None = None) -> Any:
        """An open response to read from (events, bundles); the caller closes it."""
        return self._in_session(
            lambda: self._open("GET", path, None, {**self._auth(), **(headers or {})}), True
        )

    def _in_session(self, attempt: Callable[[], Any], relogin: bool) -> Any:
        """``attempt()`` with a session; once more with a new one if the server no
        longer accepts the stored one (expired, ended)."""
        if not self.credentials.token:
            self.open_session()
        try:
            return _patient(attempt)
        except LicenseRefused as exc:
            if not relogin or exc.reason not in RELOGIN:
                raise
        self.open_session()
        return _patient(attempt)

    def events(self, execution_id: str, after: int) -> Iterator[dict[str, Any]]:
        """The execution's events after seq ``after`` as they happen (server-sent
        events); ends when the execution stops."""
        response = self.stream(
            execution_path(execution_id, "/events"), {"Last-Event-ID": str(after)}
        )
        with response:
            data: list[str] = []
            for raw in response:
                line = raw.decode("utf-8").rstrip("\r\n")
                if line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and data:
                    yield json.loads("\n".join(data))
                    data = []

    def _auth(self) -> dict[str, str]:
        return {"X-License-Key": self.credentials.key, "X-Session-Token": self.credentials.token}

    def _send(
        self,
        method: str,
        path: str,
        body: Any,
        headers: dict[str, str],
        *,
        data: bytes | None = None,
    ) -> Any:
        with self._open(method, path, body, headers, data=data) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def _open(
        self,
        method: str,
        path: str,
        body: Any,
        headers: dict[str, str],
        *,
        data: bytes | None = None,
    ) -> Any:
        if body is not None:
            data = json.dumps(body).encode()
            headers = {**headers, "Content-Type": "application/json"}
        elif data is not None:
            headers = {**headers, "Content-Type": "application/octet-stream"}
        # Imported here: every local-mode command asks whether it is in server mode.
        import urllib.error
        import urllib.request

        request = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={**headers, "User-Agent": user_agent()},
        )
        try:
            return urllib.request.urlopen(request, timeout=TIMEOUT)
        except urllib.error.HTTPError as exc:
            error = _error(exc.code, exc.read(), self.base)
            if isinstance(error, RateLimited):
                with contextlib.suppress(TypeError, ValueError):
                    error.retry_after = float(exc.headers.get("Retry-After", ""))
            raise error from None
        except (TimeoutError, urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServerUnreachable(
                f"the server at {self.base} does not answer ({reason});"
                " is `connectsw serve` running? (`connectsw logout` works locally again)"
            ) from None


def _patient(attempt: Callable[[], Any]) -> Any:
    """``attempt()``, waiting out a short rate limit (Retry-After <= RETRY_AFTER_MAX s)
    up to 3 times: one busy minute should not stop a run half way."""
    for _ in range(3):
        try:
            return attempt()
        except RateLimited as exc:
            wait = exc.retry_after
            if wait is None or wait > RETRY_AFTER_MAX:
                raise
            time.sleep(wait)
    return attempt()


def user_agent() -> str:
    """``connectsw-cli``, with `` (ci)`` when the ``CI`` variable is set: the geographic
    detector leaves automation out (a CI region is not where the person is)."""
    return "connectsw-cli (ci)" if os.environ.get("CI") else "connectsw-cli"


def remote_for(data_dir: Path) -> Remote | None:
    """A client when ``login`` stored credentials (server mode), else None (local mode)."""
    credentials = Credentials.load(data_dir)
    return Remote(credentials, data_dir) if credentials else None
