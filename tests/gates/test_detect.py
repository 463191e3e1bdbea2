"""What a workspace holds: the traits rules declare they apply to, and the service command."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from connectsw.core.models import TaskResult, TaskStatus
from connectsw.gates.detect import TRAITS, service_command, traits, walk
from tests.gates.workspaces import commit, write


def test_traits_of_a_generated_product(ws: Path) -> None:
    commit(
        ws,
        {
            "service/app.py": "X = 1\n",
            "tests/test_service.py": "",
            "web/index.html": "<h1>x</h1>",
            ".venv/lib/test_hidden.py": "",
        },
    )
    assert traits(ws) == {"python", "tests", "service", "page", "git"}
    assert set(traits(ws)) <= set(TRAITS)


def test_traits_of_projects(ws: Path) -> None:
    assert traits(ws) == frozenset()
    write(ws, {"package.json": '{"scripts": {"start": "node server.js"}}'})
    assert traits(ws) == {"node", "service"}
    write(ws, {"pyproject.toml": "", "index.html": "<p>root page</p>"})
    assert traits(ws) == {"node", "service", "python-project", "page"}
    assert "tests" in traits(ws, {"test_command": "make test"})


def test_the_service_command_in_order_of_precedence(ws: Path) -> None:
    assert service_command(ws) is None
    write(ws, {"package.json": '{"scripts": {"start": "node s.js"}}'})
    assert service_command(ws) == ["npm", "start", "--silent"]
    write(ws, {"service/app.py": ""})
    assert service_command(ws) == [sys.executable, "-m", "service.app", "--port", "{port}"]
    reported = {
        "b": TaskResult(
            execution_id="x",
            task_id="b",
            status=TaskStatus.SUCCEEDED,
            outputs={"entrypoint": "python3 -m api --host 127.0.0.1 --port=8000"},
        )
    }
    assert service_command(ws, {}, reported) == [
        sys.executable,
        "-m",
        "api",
        "--host",
        "127.0.0.1",
        "--port={port}",
    ]
    configured = {"server_command": "./run.sh --listen {port}"}
    assert service_command(ws, configured, reported) == ["./run.sh", "--listen", "{port}"]


def test_the_walk_leaves_out_fifos(ws: Path) -> None:
    # Trial 5 item 3: a rule that reads what the walk lists would wait on a FIFO for ever.
    write(ws, {"app.py": "X = 1\n"})
    os.mkfifo(ws / "pipe.py")
    assert walk(ws) == [Path("app.py")]
