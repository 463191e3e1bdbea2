"""A real `connectsw serve` subprocess and CLI processes pointed at it (server mode)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: An in-process Dask cluster (threads): the server's runs start in well under a second.
FAST_DASK = {
    "CONNECTSW_DASK__PROCESSES": "false",
    "CONNECTSW_DASK__N_WORKERS": "1",
    "CONNECTSW_DASK__THREADS_PER_WORKER": "4",
}


def clean_env(data: Path, *, fast_dask: bool = True, **extra: str) -> dict[str, str]:
    """This environment without CI or any CONNECTSW_ setting, plus the data dir, 200
    columns, :data:`FAST_DASK` if ``fast_dask``, and EXTRA."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTSW_") and k != "CI"}
    env.update(FAST_DASK if fast_dask else {}, CONNECTSW_DATA_DIR=str(data), COLUMNS="200")
    env.update(extra)
    return env


@dataclass
class Served:
    """A running server: its URL, data dir and process."""

    url: str
    data: Path
    proc: subprocess.Popen[str]
    keys: list[str] = field(default_factory=list)

    def issue(self, tier: str = "PRO") -> str:
        """A new license key, issued by the operator's CLI on the server's data dir."""
        out = run_cli(
            ["license", "issue", "--tier", tier, "--email", "a@example.com", "--json"],
            self.data,
            self.data.parent,
        )
        assert out.returncode == 0, out.stderr
        key = str(json.loads(out.stdout)["key"])
        self.keys.append(key)
        return key

    def stop(self, timeout: float = 30, *, strict: bool = False) -> int:
        """SIGTERM; its exit code once it has stopped. One still running after ``timeout``
        seconds is killed, and with ``strict`` that is an error (``TimeoutExpired``)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                if strict:
                    raise
        return self.proc.returncode


def start_server(
    data: Path,
    *args: str,
    cwd: Path | None = None,
    ready: str = "Serving on ",
    fast_dask: bool = True,
    **extra: str,
) -> Served:
    """``connectsw serve --port 0 ARGS`` on DATA, in CWD (DATA's parent unless given), with
    the environment :func:`clean_env` makes from ``fast_dask`` and EXTRA; it has started
    when its first line starts with READY, and if it does not, the test fails with its
    stderr. Its URL is that line's last word."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "connectsw.cli.main", "serve", "--port", "0", *args],
        cwd=data.parent if cwd is None else cwd,
        env=clean_env(data, fast_dask=fast_dask, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith(ready):
        proc.kill()
        raise AssertionError(
            f"server did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}"
        )
    return Served(line.split()[-1], data, proc)


def run_cli(
    args: list[str],
    data: Path,
    cwd: Path,
    timeout: float = 180,
    *,
    fast_dask: bool = True,
    **extra: str,
) -> subprocess.CompletedProcess[str]:
    """``connectsw ARGS`` as a user runs it (no terminal: nothing is asked), to its end."""
    return subprocess.run(
        [sys.executable, "-m", "connectsw.cli.main", *args],
        cwd=cwd,
        env=clean_env(data, fast_dask=fast_dask, **extra),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def http(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request; (status, headers, body) for every status."""
    if body is not None:
        data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()
