"""Run the real ``connectsw`` console script as a subprocess, non-interactively."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(sys.executable).with_name("connectsw")
EXEC_ID = re.compile(r"\bexec_[0-9a-f]{12}\b")
FAST_DASK = {
    # An in-process cluster (threads): starts in well under a second.
    "CONNECTSW_DASK__PROCESSES": "false",
    "CONNECTSW_DASK__N_WORKERS": "1",
    "CONNECTSW_DASK__THREADS_PER_WORKER": "4",
}
TIMEOUT = 180
#: Two tasks with a checkpoint between them: the smallest graph that stops to ask.
CHECKPOINT_GRAPH = """name: two
tasks:
  - id: a
    agent: noop
  - id: b
    agent: noop
    needs: [a]
checkpoints:
  - after: [a]
    question: "Go on?"
"""


def command() -> list[str]:
    """The console script if installed next to this interpreter, else ``python -m``."""
    if SCRIPT.is_file():
        return [str(SCRIPT)]
    return [sys.executable, "-m", "connectsw.cli.main"]


@dataclass
class Result:
    """A finished ``connectsw`` process."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """stdout parsed as one JSON document (fails if anything else is on stdout)."""
        try:
            return json.loads(self.stdout)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"stdout of {self.args} is not JSON ({exc}):\n{self}") from None

    @property
    def execution_id(self) -> str:
        """The first execution id in the output."""
        match = EXEC_ID.search(self.stdout) or EXEC_ID.search(self.stderr)
        assert match, f"no execution id in the output of {self.args}:\n{self}"
        return match.group(0)

    def error_line(self) -> str:
        """The one ``Error:`` line of a failed command (asserts the error contract)."""
        assert self.returncode != 0, f"{self.args} should have failed:\n{self}"
        assert "Traceback" not in self.stderr + self.stdout, str(self)
        lines = self.stderr.splitlines()
        assert len(lines) == 1, f"expected exactly one line on stderr:\n{self}"
        assert lines[0].startswith("Error: "), str(self)
        return lines[0]

    def __str__(self) -> str:
        return (
            f"$ connectsw {' '.join(self.args)}  -> exit {self.returncode}\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )


class Cli:
    """Runs ``connectsw`` in ``cwd`` with its own data dir, stdin closed."""

    def __init__(self, cwd: Path, data_dir: Path, *, fast: bool = True) -> None:
        self.cwd = cwd
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTSW_")}
        # A plain 80-column, colourless, non-interactive terminal.
        for key in ("COLUMNS", "LINES", "FORCE_COLOR", "CI"):
            env.pop(key, None)
        env.update(
            CONNECTSW_DATA_DIR=str(data_dir),
            CONNECTSW_ENGINE__RETRY_BACKOFF="0.01",
            NO_COLOR="1",
            PYTHONUNBUFFERED="1",
        )
        if fast:
            env.update(FAST_DASK)
        self.env = env

    def __call__(
        self, *args: str | Path, ok: bool | None = None, timeout: float = TIMEOUT
    ) -> Result:
        """Run ``connectsw ARGS``; ``ok=True``/``False`` asserts a zero/non-zero exit."""
        argv = [str(a) for a in args]
        proc = subprocess.run(
            [*command(), *argv],
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        result = Result(argv, proc.returncode, proc.stdout, proc.stderr)
        if ok is True:
            assert result.returncode == 0, str(result)
        elif ok is False:
            assert result.returncode != 0, str(result)
        return result

    def spawn(self, *args: str | Path, **popen: Any) -> subprocess.Popen[str]:
        """Start ``connectsw ARGS`` without waiting: stdout and stderr are pipes, stdin
        closed (``popen`` overrides, e.g. ``start_new_session=True``)."""
        options: dict[str, Any] = {
            "cwd": self.cwd,
            "env": self.env,
            "stdin": subprocess.DEVNULL,
            "stdout": subprocess.PIPE,
            "stderr": subprocess.PIPE,
            "text": True,
            **popen,
        }
        return subprocess.Popen([*command(), *(str(a) for a in args)], **options)

    def view(self, execution_id: str) -> dict[str, Any]:
        """``status ID --json --no-resume``: the execution's view."""
        return self("status", execution_id, "--json", "--no-resume").json()

    def events(self, execution_id: str) -> list[dict[str, Any]]:
        """Every event of a stopped execution, from ``watch ID --json --from-start``."""
        res = self("watch", execution_id, "--json", "--from-start", timeout=60)
        assert res.returncode in (0, 1, 8) and not res.stderr.strip(), str(res)  # its outcome
        return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


@pytest.fixture
def cli(tmp_path: Path, isolated: Path) -> Cli:
    """``connectsw`` on the test's data dir, run from ``tmp_path``, fast Dask settings."""
    return Cli(tmp_path, isolated)


@pytest.fixture
def default_cli(tmp_path: Path, isolated: Path) -> Cli:
    """``connectsw`` with the shipped Dask defaults (a real multi-process LocalCluster)."""
    return Cli(tmp_path, isolated, fast=False)
