"""Server mode's ``new product`` / ``new feature`` / ``fix``: upload, plan on the server, follow."""

from __future__ import annotations

import tempfile
from pathlib import Path

from connectsw.cli.context import State
from connectsw.cli.remote import InvalidRequest, Remote
from connectsw.core.models import ExecuteResponse, Request

#: The command that starts a project: every other one (``new feature``, ``fix``, a
#: plugin workflow's) changes an existing project, whose repository goes up as a bundle.
WITHOUT_BUNDLE = ("new product",)


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
    state: State,
    remote: Remote,
    request: Request,
    workspace: Path,
    *,
    yes: bool,
    as_json: bool,
    run: bool = True,
) -> tuple[str, int]:
    """Submit to the server and (``run``) drive the execution there; its id and the
    CLI exit code."""
    from connectsw.cli.remote_drive import remote_drive
    from connectsw.cli.submit import show_plan

    if request.command == "run":
        raise InvalidRequest(
            "a task-graph file runs in local mode: `connectsw logout`, then `connectsw run`"
        )
    body = request.to_api()
    if " ".join(request.command.lower().split()) not in WITHOUT_BUNDLE:
        body["bundleId"] = upload_workspace(remote, workspace)
    answer = ExecuteResponse.model_validate(remote.call("POST", "/v1/execute", body))
    if not as_json:
        show_plan(answer.plan, answer.execution_id)
    if not run:
        return answer.execution_id, 0
    code = remote_drive(state, remote, answer.execution_id, yes=yes, as_json=as_json)
    if as_json:
        return answer.execution_id, code
    from connectsw.cli.context import console

    console.print(f"Bring its commits here with `connectsw pull {answer.execution_id}`")
    return answer.execution_id, code
