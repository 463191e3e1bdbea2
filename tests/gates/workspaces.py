"""Real workspaces for the gate rule tests: tmp git repositories, files, commits."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from connectsw.conf.settings import GateSettings
from connectsw.core.models import CheckpointSpec, Execution, Plan, Request, Stage, TaskSpec
from connectsw.gates.base import GateContext

Make = Callable[..., GateContext]

#: A service that answers 200 "ok" to every GET on the port in its argv[1].
OK_SERVER = """\
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def git(ws: Path, *args: str) -> str:
    """Run git in ``ws`` with a fixed identity; its stdout."""
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=ws,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def write(ws: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = ws / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def commit(ws: Path, files: dict[str, str], message: str = "change") -> None:
    """Write ``files`` and commit them (the repository is created on first use)."""
    if not (ws / ".git").exists():
        git(ws, "init", "-q", "-b", "main")
    write(ws, files)
    git(ws, "add", "--", *files)
    git(ws, "commit", "-q", "-m", message)


def context(
    workspace: Path,
    rules: list[str] | None = None,
    checkpoint: str | None = None,
    artifact_dir: Path | None = None,
    **config: Any,
) -> GateContext:
    """A gate context of one stage over ``workspace``, with the default [gates] settings
    overridden by ``config``."""
    cp = CheckpointSpec(type=checkpoint, question="ok?") if checkpoint else None
    stage = Stage(index=0, name="s", task_ids=["a"], gates=rules or [], checkpoint=cp)
    plan = Plan(name="p", workflow="test", tasks=[TaskSpec(id="a", agent="noop")], stages=[stage])
    execution = Execution(request=Request(command="run"), plan=plan, workspace=str(workspace))
    settings = GateSettings.model_validate({**GateSettings().model_dump(), **config})
    return GateContext(
        execution=execution,
        stage=stage,
        workspace=workspace,
        config=settings.model_dump(),
        artifact_dir=artifact_dir,
    )
