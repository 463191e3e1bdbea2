"""The entry point: the lazy command table, exit codes, plugin commands, Ctrl-C."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest

from connectsw.cli.commands import COMMANDS
from connectsw.cli.main import cli as group
from connectsw.core.errors import ExitCode

from .conftest import EXEC_ID, FAST_DASK, Cli


def test_the_table_names_each_command_and_its_help() -> None:
    """main's table (used by --help without importing) matches the commands themselves."""
    for name, (target, short_help) in COMMANDS.items():
        module, attr = target.split(":")
        command_ = getattr(importlib.import_module(module), attr)
        assert isinstance(command_, click.Command)
        assert command_.name == name
        assert command_.help is not None
        assert command_.help.splitlines()[0] == short_help, name
        assert group.get_command(click.Context(group), name) is command_


def test_help_lists_every_built_in_command(cli: Cli) -> None:
    res = cli("--help", ok=True)
    for name in COMMANDS:
        assert f"  {name} " in res.stdout, res.stdout
    assert res.stderr == ""


def test_an_unknown_command_is_a_usage_error(cli: Cli) -> None:
    res = cli("frobnicate")
    assert res.returncode == ExitCode.INVALID_INPUT, str(res)
    assert "No such command" in res.stderr


GENERIC_ERROR = """
import click
from connectsw.cli.main import cli, main
from connectsw.core.errors import ConnectSWError

@cli.command("boom")
def boom():
    raise ConnectSWError("something went wrong\\nsecond line")

main(["boom"])
"""


def test_a_generic_error_exits_7_not_the_failed_execution_code(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", GENERIC_ERROR],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CONNECTSW_DATA_DIR": str(tmp_path / "data"), "NO_COLOR": "1"},
    )
    assert proc.returncode == ExitCode.ERROR == 7, proc.stderr
    assert proc.stderr.splitlines() == ["Error: something went wrong"]


# -- plugins ---------------------------------------------------------------------


def fake_distribution(site: Path, module: str, source: str) -> Path:
    """A minimal installed distribution on ``site``: its ``connectsw`` entry point is ``module``."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[connectsw]\n{module} = {module}\n")
    return site


COMMANDS_RAISE = """
from connectsw import hookimpl

@hookimpl
def register_commands(cli):
    raise RuntimeError("the plugin's commands are broken")
"""


def plugin_cli(tmp_path: Path, site: Path) -> Cli:
    runner = Cli(tmp_path, tmp_path / "data")
    runner.env["PYTHONPATH"] = os.pathsep.join(
        [str(site), *[p for p in [os.environ.get("PYTHONPATH")] if p]]
    )
    return runner


def test_a_plugin_whose_commands_fail_never_stops_built_in_commands(tmp_path: Path) -> None:
    site = fake_distribution(tmp_path / "site", "connectsw_badcmds", COMMANDS_RAISE)
    run = plugin_cli(tmp_path, site)

    helped = run("--help", ok=True)
    assert "  status " in helped.stdout
    assert "the plugin's commands are broken" in helped.stderr
    assert "Traceback" not in helped.stderr

    assert "No executions yet" in run("status", ok=True).stdout
    for decision in (("approve", "--yes"), ("cancel",)):
        res = run(decision[0], "exec_000000000000", *decision[1:])
        assert res.returncode == ExitCode.NOT_FOUND, str(res)
        assert "Traceback" not in res.stderr

    # A name that only a plugin could provide says why it is missing.
    res = run("hello")
    assert res.returncode == ExitCode.PLUGIN, str(res)
    assert "the plugin's commands are broken" in res.error_line()


def test_a_plugin_that_fails_at_import_does_not_break_help(tmp_path: Path) -> None:
    site = fake_distribution(
        tmp_path / "site", "connectsw_noimport", "import connectsw_missing_dependency\n"
    )
    helped = plugin_cli(tmp_path, site)("--help", ok=True)
    for name in COMMANDS:
        assert f"  {name} " in helped.stdout
    assert "Traceback" not in helped.stderr


# -- Ctrl-C ----------------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_during_a_stage_prints_one_resume_line(tmp_path: Path) -> None:
    (tmp_path / "graph.yaml").write_text(
        "name: nap\ntasks:\n  - {id: nap, agent: shell, with: {command: 'sleep 20'}}\n"
    )
    runner = Cli(tmp_path, tmp_path / "data", fast=False)
    runner.env.update({k: v for k, v in FAST_DASK.items() if k != "CONNECTSW_DASK__PROCESSES"})
    proc = runner.spawn("run", "graph.yaml", "--yes", "-w", tmp_path / "ws", start_new_session=True)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        for line in proc.stdout:
            if "task.started" in line:
                break
            assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.5)
        # As a terminal's Ctrl-C: SIGINT to the whole foreground process group, Dask
        # worker processes included (only the CLI may act on it, and print one line).
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == ExitCode.INTERRUPTED, stderr
    assert "Traceback" not in stderr, stderr
    assert len(stderr.splitlines()) <= 3, stderr
    assert "connectsw resume exec_" in stderr, stderr  # with the execution's id


def test_ctrl_c_without_an_execution_says_there_is_nothing_to_resume(tmp_path: Path) -> None:
    """Trial 5 item 12: Ctrl-C during `gates check` (which records nothing) printed
    "continue with `connectsw resume ID`": there is nothing to resume."""
    ws = tmp_path / "ws"
    ws.mkdir()
    runner = Cli(tmp_path, tmp_path / "data")
    runner.env["CONNECTSW_GATES__TEST_COMMAND"] = "sh -c 'touch started; sleep 30'"
    proc = runner.spawn(
        "gates", "check", "--rule", "tests-pass", "--workspace", ws, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while not (ws / "started").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the rule never ran"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == ExitCode.INTERRUPTED, stderr
    assert "resume" in stderr and "nothing to resume" in stderr, stderr
    assert "connectsw resume" not in stderr and "Traceback" not in stderr, stderr
    assert len(stderr.splitlines()) == 1, stderr


def _spawning_workers(pid: int) -> bool:
    """True once process ``pid`` has started a Dask worker process (a multiprocessing
    ``spawn_main`` child): its LocalCluster is starting."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()
            if int(stat[1]) == pid and b"spawn_main" in Path(f"/proc/{entry}/cmdline").read_bytes():
                return True
        except (OSError, IndexError, ValueError):
            continue
    return False


@pytest.mark.slow
@pytest.mark.parametrize("to", ["group", "process"])
def test_ctrl_c_while_the_cluster_starts_is_not_lost(tmp_path: Path, to: str) -> None:
    """A SIGINT while the LocalCluster's worker processes spawn still stops the run once
    the cluster is up (exit 130, the resume hint): a terminal's Ctrl-C (the whole
    group) and a SIGINT sent to the CLI alone (``kill -INT PID``), which was lost when
    the CLI ignored SIGINT meanwhile."""
    (tmp_path / "graph.yaml").write_text(
        "name: quick\ntasks:\n  - {id: mark, agent: shell, with: {command: 'touch ran.txt'}}\n"
    )
    runner = Cli(tmp_path, tmp_path / "data", fast=False)
    runner.env.update(CONNECTSW_DASK__N_WORKERS="2", CONNECTSW_DASK__PROCESSES="true")
    proc = runner.spawn("run", "graph.yaml", "--yes", "-w", tmp_path / "ws", start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not _spawning_workers(proc.pid):  # the cluster's workers are being started
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the cluster never started"
            time.sleep(0.005)
        if to == "group":
            os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole group
        else:
            proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == ExitCode.INTERRUPTED, stderr
    assert "Traceback" not in stderr, stderr
    assert len(stderr.splitlines()) == 1, stderr  # the workers printed nothing
    assert "connectsw resume exec_" in stderr, stderr
    assert not (tmp_path / "ws" / "ran.txt").exists()  # the stage never ran
    # Nothing ran; `connectsw resume ID` (the hint) runs it.
    run = Cli(tmp_path, tmp_path / "data")
    execution_id = EXEC_ID.findall(stderr)[0]
    assert run.view(execution_id)["status"] in ("pending", "interrupted")
    assert run("resume", execution_id, "--json", ok=True).json()["status"] == "completed"
    assert (tmp_path / "ws" / "ran.txt").exists()


def test_a_reader_that_goes_away_does_not_stop_the_run(tmp_path):
    """`connectsw run ... | head -3`: the output is dropped, the execution completes."""
    tasks = "".join(
        f"  - id: t{i}\n    agent: shell\n    with: {{command: 'echo {i} >> ../ran.txt'}}\n"
        for i in range(30)
    )
    (tmp_path / "g.yaml").write_text(f"name: p\ntasks:\n{tasks}")
    proc = Cli(tmp_path, tmp_path / "data").spawn("run", "g.yaml", "--yes", "-w", "ws")
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # as `head -1` does
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err
    assert len((tmp_path / "ran.txt").read_text().splitlines()) == 30


RACE_GRAPH = """name: race
tasks:
  - id: a
    agent: shell
    with: {command: "echo a > a.txt", outputs: [a.txt]}
  - id: b
    agent: shell
    needs: [a]
    with:
      command: >-
        echo start-$CONNECTSW_ATTEMPT >> ../blog; sleep 4;
        echo end-$CONNECTSW_ATTEMPT >> ../blog; date > b.txt
      outputs: [b.txt]
  - id: c
    agent: shell
    needs: [b]
    with: {command: "date > c.txt", outputs: [c.txt]}
checkpoints:
  - after: [a]
    question: go?
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("processes", "sig", "code"),
    [
        ("true", signal.SIGINT, ExitCode.INTERRUPTED),
        ("false", signal.SIGINT, ExitCode.INTERRUPTED),
        # Trial 7, M5: SIGTERM (a CI timeout) ended the CLI at once, silently.
        ("true", signal.SIGTERM, ExitCode.TERMINATED),
        # Trial 8, M2: SIGHUP (a closed terminal) exited 129 with no line.
        ("true", signal.SIGHUP, ExitCode.HANGUP),
    ],
    ids=["processes-sigint", "threads-sigint", "processes-sigterm", "processes-sighup"],
)
def test_ctrl_c_ends_the_running_command_before_the_cli_exits(
    tmp_path: Path, processes: str, sig: signal.Signals, code: ExitCode
) -> None:
    """Trial 7, F8: a Ctrl-C during ``approve`` let the running command end by itself
    (3 s later), its commit land and the attempt stay ``running``; the next run ran it
    again. The owner ends the attempt's process group first, records it interrupted
    (nothing committed), and only then prints the hint and exits 130."""
    from connectsw.core.stores import open_store

    (tmp_path / "race.yaml").write_text(RACE_GRAPH)
    runner = Cli(tmp_path, tmp_path / "data", fast=False)
    runner.env.update(
        CONNECTSW_DASK__N_WORKERS="1",
        CONNECTSW_DASK__THREADS_PER_WORKER="4",
        CONNECTSW_DASK__PROCESSES=processes,
    )
    ws, blog = tmp_path / "ws", tmp_path / "blog"
    paused = runner("run", "race.yaml", "-w", ws)
    assert paused.returncode == ExitCode.OK, str(paused)
    execution_id = EXEC_ID.findall(paused.stdout + paused.stderr)[0]
    proc = runner.spawn("approve", execution_id, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while not (blog.exists() and "start-1" in blog.read_text()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "b never started"
            time.sleep(0.02)
        time.sleep(1)
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)  # a terminal's Ctrl-C
        else:
            proc.send_signal(sig)  # as a CI runner's timeout does
        pressed = time.monotonic()
        _, stderr = proc.communicate(timeout=60)
        exited = time.monotonic()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr and "connectsw resume exec_" in stderr, stderr
    # The command was ended before the CLI exited: it never reached its end, not later.
    time.sleep(4)
    assert blog.read_text().splitlines() == ["start-1"], (blog.read_text(), exited - pressed)
    assert not (ws / "b.txt").exists()
    commits = subprocess.run(
        ["git", "-C", str(ws), "log", "--format=%s"], capture_output=True, text=True, check=True
    ).stdout
    assert not any(line.startswith("b:") for line in commits.splitlines()), commits
    store = open_store(f"sqlite:///{tmp_path / 'data' / 'connectsw.db'}")
    try:
        b = [
            (r.attempt, r.status.value, r.error)
            for r in store.task_results(execution_id)
            if r.task_id == "b"
        ]
    finally:
        store.close()
    # Stopped by its worker, told by the owner (not left for the owner to end after).
    assert b == [(1, "interrupted", "stopped: interrupted")], b
    # The hint's resume runs b once more, under a new attempt number.
    done = runner("resume", execution_id, "--json", ok=True)
    assert done.json()["status"] == "completed", str(done)
    assert blog.read_text().splitlines() == ["start-1", "start-2", "end-2"]


def test_main_called_in_process_puts_the_sigterm_handler_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``main`` handles SIGTERM as Ctrl-C while its command runs; a process that calls
    it and goes on (a test, an embedding program) gets its own handler back."""
    from connectsw.cli.main import main

    def mine(signum: int, frame: object) -> None:  # pragma: no cover - never delivered
        raise AssertionError("not called")

    monkeypatch.setattr(sys, "argv", ["connectsw", "--help"])
    before = signal.signal(signal.SIGTERM, mine)
    try:
        try:
            main(["--help"])
        except SystemExit as exc:
            assert exc.code in (0, None)
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, before)
