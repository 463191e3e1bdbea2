"""Server mode: ``login``, ``logout`` and ``pull`` (DESIGN.md "Local mode and server mode")."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from connectsw.cli.context import State, console, json_option, pass_state, print_json
from connectsw.cli.remote import Credentials, Remote, execution_path
from connectsw.core.errors import ConnectSWError, ExitCode


class NotLoggedIn(ConnectSWError):
    """A server-mode command without ``login``."""

    code = "not_logged_in"
    exit_code = ExitCode.INVALID_INPUT


@click.command("login")
@click.option(
    "--server", required=True, help="The server's URL, e.g. https://connectsw.example.com"
)
@click.option(
    "--key",
    envvar="CONNECTSW_LICENSE_KEY",
    help="Your license key (CSFW-...); asked for on a terminal when not given"
    " (env CONNECTSW_LICENSE_KEY).",
)
@json_option
@pass_state
def login(state: State, server: str, key: str | None, as_json: bool) -> None:
    """Use a server from now on: check the key, open a session, store both (mode 0600)."""
    from urllib.parse import urlsplit

    from connectsw.cli.context import interactive

    if not server.startswith(("http://", "https://")):
        raise click.BadParameter("expected an http:// or https:// URL", param_hint="--server")
    if "@" in urlsplit(server).netloc:  # never echoed back: it may hold a password
        raise click.BadParameter(
            "no user or password in the URL: the license key authenticates",
            param_hint="--server",
        )
    if key is None:
        if not interactive():
            raise click.UsageError("--key is required without a terminal")
        key = click.prompt("License key", hide_input=True)
    from connectsw.licensing.keys import check_shape

    key = check_shape(key)  # a mistyped key fails here, offline
    data_dir = state.settings.data_dir
    old = Credentials.load(data_dir)
    remote = Remote(Credentials(server=server, key=key), data_dir)
    opened = remote.open_session()  # saves the credentials once the server accepted them
    if old is not None and (old.server, old.session_id) != (server, opened["sessionId"]):
        Remote(old, data_dir).end_session()
        remote.credentials.save(data_dir)
    path = Credentials.path(data_dir)
    if as_json:
        print_json({"server": server, "licenseId": opened["licenseId"], "credentials": str(path)})
        return
    console.print(
        f"Logged in to {server} as license [bold]{opened['licenseId']}[/bold];"
        f" credentials in {path} (mode 0600)"
    )


@click.command("logout")
@pass_state
def logout(state: State) -> None:
    """End the session and forget the stored credentials: local mode again."""
    data_dir = state.settings.data_dir
    credentials = Credentials.load(data_dir)
    if credentials is None:
        console.print("Not logged in.")
        return
    Remote(credentials, data_dir).end_session()
    Credentials.forget(data_dir)
    console.print(f"Logged out of {credentials.server}.")


@click.command("pull")
@click.argument("execution_id")
@click.option(
    "--workspace",
    "-w",
    type=click.Path(file_okay=False, path_type=Path),
    help="Local repository to bring the commits into (default: ./PLAN for a new product,"
    " else the current directory).",
)
@json_option
@pass_state
def pull(state: State, execution_id: str, workspace: Path | None, as_json: bool) -> None:
    """Bring an execution's commits from the server into a local repository."""
    from connectsw.cli.remote_drive import view
    from connectsw.core.workspace import pull_bundle

    remote = state.remote
    if remote is None:
        raise NotLoggedIn("pull needs a server: `connectsw login --server URL --key KEY` first")
    current = view(remote, execution_id)  # 404 for an unknown or foreign execution
    if workspace is None:  # as local mode: a new product in ./SLUG, other work here
        workspace = Path.cwd()
        if current.command == "new product" and current.title:
            from connectsw.core.planner import slugify

            workspace = Path.cwd() / slugify(current.title)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "execution.bundle"
        with (
            remote.stream(execution_path(execution_id, "/bundle")) as response,
            open(bundle, "wb") as fh,
        ):
            while chunk := response.read(1 << 20):
                fh.write(chunk)
        gained = pull_bundle(bundle, workspace)
    if as_json:
        print_json({"executionId": execution_id, "workspace": str(workspace), "commits": gained})
        return
    console.print(f"Pulled {len(gained)} commit(s) of [bold]{execution_id}[/bold] into {workspace}")
