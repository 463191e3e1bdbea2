"""Server mode's ``new product`` / ``new feature`` / ``fix``: upload, plan on the server, follow."""

from __future__ import annotations

import tempfile
from pathlib import Path

from connectsw.cli.context import State
from connectsw.cli.remote import InvalidRequest, Remote
from connectsw.core.models import ExecuteResponse, Request

#: Commands that change an existing project: the local repository goes up as a bundle.
WITH_BUNDLE = ("new feature", "fix")


def upload_workspace(remote: Remote, workspace: Path) -> str | None:
    """Upload a bundle of ``workspace``'s repository; its id (None: no commits yet)."""
    from connectsw.core.workspace import create_bundle, has_commits

    if not workspace.is_dir() or not has_commits(workspace):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "workspace.bundle"
        create_bundle(workspace, path)
        answer = remote.call("POST", "/v1/bundles", data=path.read_bytes())
    return str(answer["bundleId"])


def submit_remote(
    state: State, remote: Remote, request: Request, workspace: Path, *, yes: bool, as_json: bool
) -> int:
    """Submit to the server and drive the execution there; the CLI exit code."""
    from connectsw.cli.remote_drive import remote_drive
    from connectsw.cli.submit import show_plan

    if request.command == "run":
        raise InvalidRequest(
            "a task-graph file runs in local mode: `connectsw logout`, then `connectsw run`"
        )
    body = request.to_api()
    if request.command in WITH_BUNDLE:
        body["bundleId"] = upload_workspace(remote, workspace)
    answer = ExecuteResponse.model_validate(remote.call("POST", "/v1/execute", body))
    if not as_json:
        show_plan(answer.plan, answer.execution_id)
    code = remote_drive(state, remote, answer.execution_id, yes=yes, as_json=as_json)
    if as_json:
        return code
    from connectsw.cli.context import console

    console.print(f"Bring its commits here with `connectsw pull {answer.execution_id}`")
    return code
