"""Server mode end to end: `connectsw serve`, a license, `login`, `new product` run by
the server, each checkpoint approved from another CLI process, `pull`.

The local repository after `pull` must hold the files and commits local mode makes.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .serving import Served, clean_env, run_cli, start_server

pytestmark = pytest.mark.slow

TITLE = "Recipe planner"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = start_server(tmp_path_factory.mktemp("server") / "data")
    yield server
    server.stop()


def _git(repo: Path, *args: str) -> list[str]:
    out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def _login(served: Served, data: Path, cwd: Path) -> None:
    key = served.issue()
    out = run_cli(["login", "--server", served.url, "--key", key], data, cwd)
    assert out.returncode == 0, out.stderr
    credentials = data / "credentials.json"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert key not in out.stdout + out.stderr  # the key is never echoed


def _status(data: Path, cwd: Path, execution_id: str) -> dict[str, object]:
    out = run_cli(["status", execution_id, "--json"], data, cwd)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def test_new_product_through_the_server_approved_from_another_process(
    served: Served, tmp_path: Path
) -> None:
    client = tmp_path / "client"
    work = tmp_path / "work"
    work.mkdir()
    _login(served, client, work)

    first = run_cli(["new", "product", TITLE], client, work)  # no --yes, no terminal
    assert first.returncode == 0, first.stderr
    execution_id = next(w for w in first.stdout.split() if w.startswith("exec_")).rstrip(":")
    assert _status(client, work, execution_id)["status"] == "awaiting_checkpoint"
    decisions = 0
    while _status(client, work, execution_id)["status"] == "awaiting_checkpoint":
        out = run_cli(["approve", execution_id], client, work)  # a second process decides
        assert out.returncode == 0, out.stderr
        decisions += 1
        assert decisions <= 5
    assert _status(client, work, execution_id)["status"] == "completed"
    assert decisions == 3

    pulled = run_cli(["pull", execution_id, "--json"], client, work)
    assert pulled.returncode == 0, pulled.stderr
    repo = Path(json.loads(pulled.stdout)["workspace"])
    assert repo == work / "recipe-planner"

    # The same work in local mode, for comparison.
    local = tmp_path / "local"
    local.mkdir()
    alone = run_cli(["new", "product", TITLE, "--yes"], tmp_path / "local-data", local)
    assert alone.returncode == 0, alone.stderr
    here = local / "recipe-planner"
    assert _git(repo, "ls-files") == _git(here, "ls-files")
    subjects = _git(repo, "log", "--format=%s")
    # Tasks of one stage run in parallel: their commits may come in either order.
    assert sorted(subjects) == sorted(_git(here, "log", "--format=%s"))
    assert len(subjects) == 5  # one commit per task
    for name in _git(repo, "ls-files"):
        if name.endswith(".md") and "PRD" in name:
            assert (repo / name).read_text() == (here / name).read_text()


def test_new_product_yes_through_the_server(served: Served, tmp_path: Path) -> None:
    client = tmp_path / "client"
    work = tmp_path / "work"
    work.mkdir()
    _login(served, client, work)
    out = run_cli(["new", "product", TITLE, "--yes", "--json"], client, work)
    assert out.returncode == 0, out.stderr
    view = json.loads(out.stdout)
    assert view["status"] == "completed"
    assert set(view["tasks"].values()) == {"succeeded"}
    # the view names its request, so `pull` needs no listing to find ./SLUG
    assert (view["command"], view["title"]) == ("new product", TITLE)


def test_logout_returns_to_local_mode(served: Served, tmp_path: Path) -> None:
    client = tmp_path / "client"
    work = tmp_path / "work"
    work.mkdir()
    _login(served, client, work)
    listed = run_cli(["status", "--json"], client, work)
    assert listed.returncode == 0, listed.stderr
    out = run_cli(["logout"], client, work)
    assert out.returncode == 0, out.stderr
    assert not (client / "credentials.json").exists()
    local = run_cli(["status", "--json"], client, work)
    assert local.returncode == 0 and json.loads(local.stdout) == []


def test_a_server_that_does_not_answer_is_one_line(tmp_path: Path) -> None:
    client = tmp_path / "client"
    client.mkdir()
    (client / "credentials.json").write_text(
        json.dumps(
            {"server": "http://127.0.0.1:9", "key": "CSFW-PRO-X-Y", "token": "t", "session_id": "s"}
        )
    )
    os.chmod(client / "credentials.json", 0o600)
    out = run_cli(["status"], client, tmp_path)
    assert out.returncode == 7
    assert out.stderr.count("\n") == 1 and "does not answer" in out.stderr
    assert "CSFW-PRO-X-Y" not in out.stderr


def test_a_server_killed_mid_run_is_resumed_from_the_cli(tmp_path: Path) -> None:
    """kill -9 of the server while a stage runs; a new server; `connectsw resume` ends
    it, and every task's work is committed exactly once."""
    lease = {"CONNECTSW_ENGINE__HEARTBEAT_INTERVAL": "0.2", "CONNECTSW_ENGINE__LEASE_TIMEOUT": "1"}
    data = tmp_path / "server"
    server = start_server(data, **lease)
    client = tmp_path / "client"
    work = tmp_path / "work"
    work.mkdir()
    try:
        _login(server, client, work)
        submitted = subprocess.Popen(
            [sys.executable, "-m", "connectsw.cli.main", "new", "product", TITLE, "--yes"],
            cwd=work,
            env=clean_env(client),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert submitted.stdout is not None
        seen = ""
        while "task.started" not in seen:  # a stage is running on the server
            line = submitted.stdout.readline()
            assert line, f"the client ended early: {seen}"
            seen += line
        server.proc.kill()  # SIGKILL: no cleanup at all
        server.proc.wait()
        assert submitted.wait(60) != 0  # the client says the server went away
    finally:
        server.stop()
    execution_id = next(w for w in seen.split() if w.startswith("exec_")).rstrip(":")

    again = start_server(data, **lease)
    try:
        credentials = json.loads((client / "credentials.json").read_text())
        credentials["server"] = again.url  # the new server listens on another port
        (client / "credentials.json").write_text(json.dumps(credentials))
        # Killed while a stage ran: the new server continues it by itself once the
        # dead one's lease lapsed (or it was killed just after, at the checkpoint).
        deadline = time.monotonic() + 60
        while (where := _status(client, work, execution_id)["status"]) not in (
            "awaiting_checkpoint",
            "completed",
        ):
            assert where in ("executing", "interrupted"), where
            assert time.monotonic() < deadline, "the new server never continued it"
            time.sleep(0.3)
        if where == "awaiting_checkpoint":
            approved = run_cli(["approve", execution_id, "--yes", "--json"], client, work)
            assert approved.returncode == 0, approved.stderr
        assert _status(client, work, execution_id)["status"] == "completed"
        again_resume = run_cli(["resume", execution_id], client, work)
        assert again_resume.returncode == 5 and "already completed" in again_resume.stderr
        pulled = run_cli(["pull", execution_id, "--json"], client, work)
        assert pulled.returncode == 0, pulled.stderr
        repo = Path(json.loads(pulled.stdout)["workspace"])
        subjects = _git(repo, "log", "--format=%s")
        assert len(subjects) == len(set(subjects)) == 5, subjects  # each task once
    finally:
        again.stop()


def test_new_feature_uploads_the_repository_and_pull_fast_forwards(
    served: Served, tmp_path: Path
) -> None:
    client = tmp_path / "client"
    work = tmp_path / "work"
    work.mkdir()
    _login(served, client, work)
    made = run_cli(["new", "product", TITLE, "--yes", "--json"], client, work)
    assert made.returncode == 0, made.stderr
    product = json.loads(made.stdout)["executionId"]
    assert run_cli(["pull", product], client, work).returncode == 0
    repo = work / "recipe-planner"
    before = _git(repo, "rev-parse", "HEAD")[0]

    feature = run_cli(["new", "feature", "export as CSV", "--yes", "--json"], client, repo)
    # The built-in agents only scaffold products: the feature fails, as in local mode.
    assert feature.returncode == 1, feature.stderr
    feature_id = json.loads(feature.stdout)["executionId"]
    pulled = run_cli(["pull", feature_id, "--json"], client, repo)
    # The server's workspace was a clone of ours (else the histories would diverge).
    assert pulled.returncode == 0, pulled.stderr
    gained = json.loads(pulled.stdout)["commits"]
    assert gained == ["spec: Write the feature spec"]  # what ran before the failure
    assert _git(repo, "rev-parse", "HEAD~1")[0] == before  # fast-forwarded on top of ours


def test_a_local_history_that_diverged_is_not_overwritten(served: Served, tmp_path: Path) -> None:
    client = tmp_path / "client"
    work = tmp_path / "work"
    repo = work / "recipe-planner"
    repo.mkdir(parents=True)
    _login(served, client, work)
    made = run_cli(["new", "product", TITLE, "--yes", "--json"], client, work)
    assert made.returncode == 0, made.stderr
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "mine.txt").write_text("my own work\n")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "me",
        "GIT_AUTHOR_EMAIL": "me@example.com",
        "GIT_COMMITTER_NAME": "me",
        "GIT_COMMITTER_EMAIL": "me@example.com",
    }
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "mine"], check=True, env=env)
    pulled = run_cli(["pull", json.loads(made.stdout)["executionId"]], client, work)
    assert pulled.returncode != 0
    assert "diverged" in pulled.stderr and pulled.stderr.count("\n") == 1
    assert _git(repo, "log", "--format=%s") == ["mine"]


def test_unreadable_credentials_are_one_line(tmp_path: Path) -> None:
    client = tmp_path / "client"
    client.mkdir()
    (client / "credentials.json").write_text("{not json")
    out = run_cli(["status"], client, tmp_path)
    assert out.returncode == 7
    assert out.stderr.count("\n") == 1 and "connectsw login" in out.stderr


@pytest.mark.parametrize(
    "key", ["CSFW-PRO-NOPE", "csfw-pro-x", "", "CSFW-GOLD-AAAAAAAAAAAAAAAA-AAAAAAAAAAAAAAAA"]
)
def test_login_refuses_a_mistyped_key_offline(tmp_path: Path, key: str) -> None:
    out = run_cli(
        ["login", "--server", "http://127.0.0.1:9", "--key", key], tmp_path / "c", tmp_path
    )
    assert out.returncode == 5, out.stderr  # LicenseRefused: not allowed
    assert "not a ConnectSW license key" in out.stderr and out.stderr.count("\n") == 1
    assert not (tmp_path / "c" / "credentials.json").exists()


def test_login_with_a_key_the_server_refuses_stores_nothing(served: Served, tmp_path: Path) -> None:
    forged = served.issue()[:-4] + "AAAA"
    out = run_cli(["login", "--server", served.url, "--key", forged], tmp_path / "c", tmp_path)
    assert out.returncode == 5, out.stderr
    assert "not valid" in out.stderr and forged not in out.stderr
    assert not (tmp_path / "c" / "credentials.json").exists()


def test_a_session_the_server_ended_is_replaced_transparently(
    served: Served, tmp_path: Path
) -> None:
    from .serving import http

    client = tmp_path / "client"
    _login(served, client, tmp_path)
    stored = json.loads((client / "credentials.json").read_text())
    status, _, _ = http(
        "DELETE",
        f"{served.url}/v1/sessions/{stored['session_id']}",
        headers={"X-Session-Token": stored["token"]},
    )
    assert status == 204  # as a lapsed or logged-out session would be
    out = run_cli(["status", "--json"], client, tmp_path)
    assert out.returncode == 0, out.stderr
    renewed = json.loads((client / "credentials.json").read_text())
    assert renewed["token"] != stored["token"]
    assert stat.S_IMODE((client / "credentials.json").stat().st_mode) == 0o600


def test_login_without_a_key_and_without_a_terminal_is_one_line(tmp_path: Path) -> None:
    out = run_cli(["login", "--server", "http://127.0.0.1:9"], tmp_path / "c", tmp_path)
    assert out.returncode == 2  # a usage error, as click reports them
    assert "Error: --key is required without a terminal" in out.stderr
    assert "Warning" not in out.stderr and "aborted" not in out.stderr


def test_a_server_url_with_a_password_is_refused_unechoed(tmp_path: Path) -> None:
    url = "http://user:s3cret@127.0.0.1:9"
    out = run_cli(["login", "--server", url, "--key", "CSFW-PRO-X"], tmp_path / "c", tmp_path)
    assert out.returncode == 2 and "s3cret" not in out.stderr


def test_resume_of_a_cancelled_execution_exits_8_as_in_local_mode(
    served: Served, tmp_path: Path
) -> None:
    client = tmp_path / "client"
    _login(served, client, tmp_path)
    made = run_cli(["new", "product", TITLE, "--json"], client, tmp_path)
    execution_id = json.loads(made.stdout)["executionId"]
    assert run_cli(["cancel", execution_id], client, tmp_path).returncode == 0
    out = run_cli(["resume", execution_id], client, tmp_path)
    assert out.returncode == 8 and "cancelled" in out.stderr


def test_odd_ids_name_no_other_path(served: Served, tmp_path: Path) -> None:
    client = tmp_path / "client"
    _login(served, client, tmp_path)
    for odd in ("exec_../../x", "../../v1/executions", "a/b"):
        out = run_cli(["status", odd], client, tmp_path)
        assert out.returncode == 4 and f"no execution {odd}" in out.stderr, out.stderr


def test_something_else_than_a_connectsw_server_is_said_so(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    other = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        key = "CSFW-PRO-AAAAAAAAAAAAAAAA-AAAAAAAAAAAAAAAA"
        out = run_cli(["login", "--server", f"http://127.0.0.1:{port}", "--key", key],
                      tmp_path / "c", tmp_path)  # fmt: skip
        assert out.returncode == 7, out.stderr
        assert "is it a ConnectSW server?" in out.stderr and out.stderr.count("\n") == 1
    finally:
        other.kill()
        other.wait()


def test_a_short_rate_limit_is_waited_out(tmp_path: Path) -> None:
    from connectsw.cli.remote import Credentials, Remote

    server = start_server(tmp_path / "server", CONNECTSW_SERVER__IP_RATE_LIMIT="4/second")
    try:
        remote = Remote(Credentials(server=server.url, key=server.issue()), tmp_path / "c")
        started = time.monotonic()
        for _ in range(10):  # 2.5 times the limit of one second
            assert remote.call("GET", "/v1/executions")["executions"] == []
        assert time.monotonic() - started >= 1.0  # it waited rather than failed
    finally:
        server.stop()


def test_ctrl_c_in_server_mode_says_the_server_goes_on(served: Served, tmp_path: Path) -> None:
    client = tmp_path / "client"
    _login(served, client, tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "connectsw.cli.main", "new", "product", TITLE, "--yes"],
        cwd=tmp_path, env=clean_env(client), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    while "task.started" not in proc.stdout.readline():
        assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "the server goes on with exec_" in err or "waits at a checkpoint" in err, err
    assert "connectsw resume" not in err


def test_the_client_says_when_it_runs_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    from connectsw.cli.remote import user_agent

    monkeypatch.delenv("CI", raising=False)
    assert user_agent() == "connectsw-cli"
    monkeypatch.setenv("CI", "true")
    assert "(ci)" in user_agent()  # matches antipiracy.automation_agents' "%(ci)%"
