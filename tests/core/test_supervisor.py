"""The supervisor: groups end on timeout, stop, exit and the caller's death; output is bounded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from connectsw.core import supervisor
from connectsw.core.errors import ConnectSWError
from connectsw.core.supervisor import ProcessRef, SupervisorError

from .procs import alive, wait_until


def members(pgid: int) -> list[int]:
    """Live (not zombie) processes in group ``pgid``, read from /proc."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{name}/stat").read_bytes().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != b"Z" and int(fields[2]) == pgid:
            found.append(int(name))
    return found


def test_runs_and_reports_code_and_combined_output(tmp_path: Path) -> None:
    out = supervisor.run("echo out; echo err >&2; exit 3", cwd=tmp_path, shell=True)
    assert out.returncode == 3
    assert out.stopped is None
    assert out.output == "out\nerr\n"
    assert out.output_bytes == 8
    assert out.ref.pgid == out.ref.pid > 1
    assert out.ref.start_time > 0


def test_argv_stdin_and_cwd(tmp_path: Path) -> None:
    out = supervisor.run(
        [sys.executable, "-c", "import os,sys; print(os.getcwd()); print(sys.stdin.read())"],
        cwd=tmp_path,
        stdin=b"hello",
    )
    assert out.returncode == 0
    assert out.output.splitlines() == [str(tmp_path), "hello"]


def test_stdin_defaults_to_devnull(tmp_path: Path) -> None:
    out = supervisor.run(["cat"], cwd=tmp_path, deadline=time.monotonic() + 5)
    assert (out.returncode, out.output) == (0, "")


def test_output_keeps_head_and_tail(tmp_path: Path) -> None:
    script = "import sys; sys.stdout.write('A' * 1000 + 'B' * 100000 + 'C' * 1000)"
    out = supervisor.run([sys.executable, "-c", script], cwd=tmp_path, output_limit=2000)
    assert out.output_bytes == 102000
    assert out.output == "A" * 1000 + "\n[... 100000 bytes omitted ...]\n" + "C" * 1000


def test_invalid_utf8_is_replaced(tmp_path: Path) -> None:
    out = supervisor.run("printf 'ok \\377\\376 end'", cwd=tmp_path, shell=True)
    assert out.returncode == 0
    assert out.output == "ok \ufffd\ufffd end"


def test_timeout_ends_the_whole_group(tmp_path: Path) -> None:
    # The grandchild would write late.txt after 1.5 s if only sh were killed.
    command = "(sleep 1.5; touch late.txt) & sleep 30"
    start = time.monotonic()
    out = supervisor.run(command, cwd=tmp_path, shell=True, deadline=start + 0.3, grace=0.5)
    assert out.stopped == "timeout"
    assert out.returncode is None
    assert time.monotonic() - start < 2.0
    assert members(out.ref.pgid) == []
    time.sleep(1.7)
    assert not (tmp_path / "late.txt").exists()


def test_should_stop_reason_ends_the_group(tmp_path: Path) -> None:
    seen: list[ProcessRef] = []
    start = time.monotonic()

    def stop() -> str | None:
        return "cancelled" if time.monotonic() - start > 0.3 else None

    out = supervisor.run(
        "sleep 30 & sleep 30", cwd=tmp_path, shell=True, should_stop=stop, on_spawn=seen.append
    )
    assert out.stopped == "cancelled"
    assert out.returncode is None
    assert seen == [out.ref]
    assert ProcessRef.from_dict(json.loads(json.dumps(out.ref.to_dict()))) == out.ref
    assert members(out.ref.pgid) == []


def test_term_is_followed_by_kill_after_grace(tmp_path: Path) -> None:
    script = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(30)"
    start = time.monotonic()
    out = supervisor.run(
        [sys.executable, "-c", script], cwd=tmp_path, deadline=start + 0.5, grace=0.5
    )
    assert out.stopped == "timeout"
    assert time.monotonic() - start < 3.0
    assert members(out.ref.pgid) == []


def test_leftovers_of_a_finished_command_are_ended(tmp_path: Path) -> None:
    start = time.monotonic()
    out = supervisor.run("sleep 30 & echo $!", cwd=tmp_path, shell=True, grace=0.5)
    assert out.returncode == 0
    assert time.monotonic() - start < 3.0
    assert not alive(int(out.output.strip()))
    assert members(out.ref.pgid) == []


def test_a_descendant_that_left_the_group_is_ended(tmp_path: Path) -> None:
    # setsid moves sleep to a session of its own; the reaper (a subreaper) still ends it.
    out = supervisor.run("setsid sleep 30 & echo $!", cwd=tmp_path, shell=True, grace=0.5)
    assert out.returncode == 0
    pid = int(out.output.strip())
    assert wait_until(lambda: not alive(pid), 3.0)


def test_a_descendant_re_parented_during_the_grace_gets_its_term(tmp_path: Path) -> None:
    # The group's TERM kills the outer sh; its setsid'd child is then re-parented to the
    # reaper, which TERMs it at once (its trap runs) rather than KILLing it after the grace.
    inner = "trap 'echo termed > termed.txt; exit 0' TERM; sleep 30 & wait"
    command = f'setsid sh -c "{inner}" & echo started > started.txt; sleep 30'
    start = time.monotonic()
    out = supervisor.run(command, cwd=tmp_path, shell=True, deadline=start + 0.5, grace=5.0)
    assert out.stopped == "timeout"
    assert time.monotonic() - start < 3.0
    assert (tmp_path / "started.txt").exists()
    assert (tmp_path / "termed.txt").read_text() == "termed\n"


def test_command_killed_by_a_signal(tmp_path: Path) -> None:
    out = supervisor.run("kill -9 $$", cwd=tmp_path, shell=True)
    assert out.returncode == 128 + signal.SIGKILL
    assert out.stopped is None


def test_exception_in_on_spawn_ends_the_group(tmp_path: Path) -> None:
    refs: list[ProcessRef] = []

    def boom(ref: ProcessRef) -> None:
        refs.append(ref)
        raise RuntimeError("store down")

    with pytest.raises(RuntimeError, match="store down"):
        supervisor.run("sleep 30", cwd=tmp_path, shell=True, on_spawn=boom, grace=0.5)
    assert members(refs[0].pgid) == []


def test_past_deadline_starts_nothing(tmp_path: Path) -> None:
    out = supervisor.run("touch ran", cwd=tmp_path, shell=True, deadline=time.monotonic() - 1)
    assert out.stopped == "timeout"
    assert out.ref.pid == 0
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize(
    ("args", "cwd", "message"),
    [
        (["no-such-command-xyz"], ".", "cannot run no-such-command-xyz: command not found"),
        (["./missing.sh"], ".", "cannot run ./missing.sh: not an executable file"),
        (["true"], "nowhere", "working directory"),
    ],
)
def test_cannot_start_is_one_clear_line(
    tmp_path: Path, args: list[str], cwd: str, message: str
) -> None:
    with pytest.raises(SupervisorError) as info:
        supervisor.run(args, cwd=tmp_path / cwd)
    assert isinstance(info.value, ConnectSWError)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_caller_killed_ends_the_group(tmp_path: Path) -> None:
    caller = tmp_path / "caller.py"
    caller.write_text(
        textwrap.dedent(
            """
            import sys
            from pathlib import Path
            from connectsw.core import supervisor

            def spawned(ref):
                print(ref.pgid, flush=True)

            supervisor.run("sleep 30 & sleep 30", cwd=Path("."), shell=True, on_spawn=spawned)
            """
        )
    )
    proc = subprocess.Popen(
        [sys.executable, str(caller)], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    pgid = int(proc.stdout.readline())
    assert wait_until(lambda: len(members(pgid)) >= 3, 5.0)  # reaper, sh, two sleeps
    proc.kill()
    proc.wait()
    assert wait_until(lambda: members(pgid) == [], 3.0), members(pgid)


def test_stop_group_ends_a_leftover_group(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sh", "-c", "sleep 30 & sleep 30"], start_new_session=True)
    try:
        assert wait_until(lambda: len(members(proc.pid)) == 3, 5.0)
        start = supervisor._start_time(proc.pid)
        assert start
        host = supervisor._hostname()
        # Another host, or a reused pid (other start time): left alone.
        assert not supervisor.stop_group(ProcessRef("elsewhere", proc.pid, proc.pid, start))
        assert not supervisor.stop_group(ProcessRef(host, proc.pid, proc.pid, start + 1))
        assert len(members(proc.pid)) == 3
        assert supervisor.stop_group(ProcessRef(host, proc.pid, proc.pid, start), grace=1.0)
        proc.wait(5)
        assert members(proc.pid) == []
        assert not supervisor.stop_group(ProcessRef(host, proc.pid, proc.pid, start))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_agent_env_keeps_engine_credentials_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", "s3cret")
    monkeypatch.setenv("PGSSLKEY", "/k")
    monkeypatch.setenv("PGSERVICE", "svc")
    monkeypatch.setenv("CONNECTSW_STORE__URL", "postgresql://u:pw@h/db")
    monkeypatch.setenv("HOME_OF_TEST", "kept")
    env = supervisor.agent_env()
    assert "PGPASSWORD" not in env
    assert "PGSSLKEY" not in env
    assert "PGSERVICE" not in env
    assert "CONNECTSW_STORE__URL" not in env
    assert env["HOME_OF_TEST"] == "kept"
    env = supervisor.agent_env({"X": "1", "PGUSER": "task"}, pass_env=["PGPASSWORD"])
    assert env["PGPASSWORD"] == "s3cret"
    assert env["X"] == "1"
    assert env["PGUSER"] == "task"  # a task's own env wins


def test_every_built_in_providers_key_variable_is_kept_from_agents() -> None:
    from connectsw.agents.llm.anthropic import AnthropicProvider
    from connectsw.agents.llm.openai import OpenAIProvider

    for provider in (OpenAIProvider, AnthropicProvider):
        assert provider.default_key_env in supervisor.PROVIDER_KEY_ENV
        assert provider.default_key_env in supervisor.llm_key_env()


def test_command_sees_the_given_environment_exactly(tmp_path: Path) -> None:
    # Python (the reaper) sets LC_CTYPE under the C locale; the command must not see it.
    env = {"PATH": os.environ["PATH"], "ONLY": "this"}
    out = supervisor.run(["env"], cwd=tmp_path, env=env)
    assert sorted(out.output.splitlines()) == sorted(f"{k}={v}" for k, v in env.items())


def test_memory_stays_flat_with_large_output(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import resource, sys
        from pathlib import Path
        from connectsw.core import supervisor

        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = supervisor.run("head -c 150000000 /dev/zero", cwd=Path("."), shell=True)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(out.output_bytes, len(out.output), after - before)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    total, kept, growth_kib = map(int, proc.stdout.split())
    assert total == 150_000_000
    assert kept < 70_000
    assert growth_kib < 50 * 1024


def test_split_stderr(tmp_path: Path) -> None:
    out = supervisor.run("echo out; echo err >&2", cwd=tmp_path, shell=True, split_stderr=True)
    assert (out.output, out.stderr) == ("out\n", "err\n")


def test_reaper_killed_by_the_command_still_ends_the_group(tmp_path: Path) -> None:
    # $PPID of the command is the reaper; the group must not outlive it.
    start = time.monotonic()
    out = supervisor.run("kill -9 $PPID; sleep 30", cwd=tmp_path, shell=True, grace=0.5)
    assert out.returncode == 128 + signal.SIGKILL
    assert time.monotonic() - start < 3.0
    assert members(out.ref.pgid) == []


@pytest.mark.slow
def test_the_reaper_keeps_the_deadline_while_its_owner_is_stopped(tmp_path: Path) -> None:
    # Trial 5 item 1: with its Dask worker stopped (kill -STOP), nothing ended the command
    # at its deadline; it ran to its end and wrote late.txt.
    owner = textwrap.dedent(
        f"""
        import time
        from connectsw.core import supervisor
        out = supervisor.run(
            "echo start > started; sleep 4; touch late.txt", shell=True,
            cwd={str(tmp_path)!r}, deadline=time.monotonic() + 1.0, grace=0.5,
        )
        print(out.stopped, out.returncode)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", owner], stdout=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: (tmp_path / "started").exists(), 20)
        os.kill(proc.pid, signal.SIGSTOP)
        time.sleep(5.0)  # past the deadline and past the command's own end
        assert not (tmp_path / "late.txt").exists()
        assert members_of_children(proc.pid) == []  # the reaper and its group are gone
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    out, _ = proc.communicate(timeout=30)
    assert out.split() == ["timeout", "None"]


def members_of_children(ppid: int) -> list[int]:
    """Live children of ``ppid``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{name}/stat").read_bytes().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != b"Z" and int(fields[1]) == ppid:
            found.append(int(name))
    return found
