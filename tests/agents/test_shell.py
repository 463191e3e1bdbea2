"""The shell agent: supervised commands, a clean environment, safe outputs, bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from connectsw.agents.base import TaskContext
from connectsw.agents.shell import FEEDBACK_ENV_BYTES, MAX_ARGUMENT_BYTES, ShellAgent, ShellInput
from connectsw.core.errors import PlanError, TaskError, TaskTimeout
from connectsw.core.models import Request, TaskSpec
from connectsw.core.planner import Planner
from connectsw.core.supervisor import ProcessRef

LATE = "cd . && python3 -c \"import time; time.sleep(4); open('late.txt','w').write('x')\""


def make_ctx(workspace: Path, timeout: float | None = None, **with_: Any) -> TaskContext:
    return TaskContext(
        execution_id="exec_shell",
        task=TaskSpec(id="t1", agent="shell", **{"with": with_}),
        workspace=workspace,
        request=Request(command="run"),
        attempt=2,
        timeout=timeout,
    )


def test_runs_the_command_and_returns_output(tmp_path: Path) -> None:
    out = ShellAgent().run(make_ctx(tmp_path, command="echo hello > a.txt; echo done"))
    assert out.outputs == {"returncode": 0, "output": "done\n"}
    assert (tmp_path / "a.txt").read_text() == "hello\n"


def test_failure_message_names_code_and_last_line(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match=r"^command exited with 3: boom$"):
        ShellAgent().run(make_ctx(tmp_path, command="echo one; echo boom >&2; exit 3"))


def test_invalid_utf8_output_is_replaced(tmp_path: Path) -> None:
    out = ShellAgent().run(make_ctx(tmp_path, command="printf 'a\\377b'"))
    assert out.outputs["output"] == "a\ufffdb"


@pytest.mark.slow
def test_timeout_stops_the_whole_command(tmp_path: Path) -> None:
    # Issue 5, fault 1: only sh was killed, and late.txt appeared 3 s after the timeout.
    start = time.monotonic()
    with pytest.raises(TaskError, match=r"^command timed out after 1s$") as info:
        ShellAgent().run(make_ctx(tmp_path, timeout=1, command=LATE))
    assert time.monotonic() - start < 4.0
    time.sleep(4.5)
    assert not (tmp_path / "late.txt").exists()
    assert isinstance(info.value, TaskTimeout)


def test_deadline_stop_and_spawn_hook_of_the_context(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, timeout=60, command="sleep 30")
    refs: list[ProcessRef] = []
    ctx.deadline = time.monotonic() + 0.3  # type: ignore[attr-defined]
    ctx.on_spawn = refs.append  # type: ignore[attr-defined]
    start = time.monotonic()
    with pytest.raises(TaskTimeout):
        ShellAgent().run(ctx)
    assert time.monotonic() - start < 3.0
    assert len(refs) == 1
    assert refs[0].pgid > 1

    ctx = make_ctx(tmp_path, command="sleep 30")
    ctx.should_stop = lambda: "cancelled"  # type: ignore[attr-defined]
    with pytest.raises(TaskError, match=r"^command stopped: cancelled$"):
        ShellAgent().run(ctx)


def test_environment_has_no_engine_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 5, fault 8: PGPASSWORD reached every shell task (and `env > env.txt` committed it).
    monkeypatch.setenv("PGPASSWORD", "s3cret-pw")
    monkeypatch.setenv("PGPASSFILE", "/root/.pgpass")
    monkeypatch.setenv("CONNECTSW_STORE__URL", "postgresql://u:s3cret-url@h/db")
    ShellAgent().run(make_ctx(tmp_path, command="env > env.txt", env={"MINE": "1"}))
    env = (tmp_path / "env.txt").read_text()
    assert "s3cret" not in env
    assert "PGPASSFILE" not in env
    assert "MINE=1" in env
    assert "CONNECTSW_EXECUTION_ID=exec_shell" in env
    assert "CONNECTSW_TASK_ID=t1" in env
    assert "CONNECTSW_ATTEMPT=2" in env


def test_pass_env_lets_a_task_ask_for_a_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGPASSWORD", "s3cret-pw")
    out = ShellAgent().run(
        make_ctx(tmp_path, command='echo "$PGPASSWORD"', pass_env=["PGPASSWORD"])
    )
    assert out.outputs["output"] == "s3cret-pw\n"


def test_the_engines_llm_keys_are_kept_from_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trial 5, item 6: with ``[llm.openai] api_key_env = "MY_LLM_KEY"``, a task's
    ``env > env.txt`` held MY_LLM_KEY and OPENAI_API_KEY (and was committed). The
    providers' usual variables and the configured ones are removed; a cloud
    credential that is not the engine's (AWS_*) is kept; ``pass_env`` asks back."""
    from connectsw.conf.settings import get_settings

    monkeypatch.setenv("CONNECTSW_LLM__OPENAI__API_KEY_ENV", "MY_LLM_KEY")
    monkeypatch.setenv("CONNECTSW_LLM__ANTHROPIC__API_KEY_ENV", "MY_OTHER_KEY")
    get_settings.cache_clear()
    for name in ("MY_LLM_KEY", "MY_OTHER_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.setenv(name, f"sk-{name.lower()}-s3cret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-kept")
    ShellAgent().run(make_ctx(tmp_path, command="env > env.txt"))
    env = (tmp_path / "env.txt").read_text()
    assert "s3cret" not in env
    assert "AWS_SECRET_ACCESS_KEY=aws-kept" in env
    out = ShellAgent().run(
        make_ctx(tmp_path, command='echo "$OPENAI_API_KEY"', pass_env=["OPENAI_API_KEY"])
    )
    assert out.outputs["output"] == "sk-openai_api_key-s3cret\n"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../../x", "outside the workspace"),
        ("a/../../x", "outside the workspace"),
        ("/etc/passwd", "is absolute"),
        (".", "the workspace itself"),
        ("", "empty"),
        (".git/hooks/post-commit", "inside .git"),
        ("sub/./.git/config", "inside .git"),
    ],
)
def test_outputs_outside_the_workspace_are_refused_before_running(
    tmp_path: Path, path: str, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        ShellInput.model_validate({"command": "true", "outputs": [path]})
    # The planner validates `with` through input_model: the task is refused before it runs.
    graph = tmp_path / "graph.yaml"
    graph.write_text(
        "name: x\ntasks:\n  - id: a\n    agent: shell\n"
        f"    with: {{command: 'touch ran', outputs: ['{path}']}}\n"
    )
    with pytest.raises(PlanError, match=message) as info:
        Planner().plan(Request(command="run", args=[str(graph)]))
    assert "task 'a' (shell): with.outputs" in str(info.value)
    assert not (tmp_path / "ran").exists()


def test_feedback_of_many_rounds_fits_the_environment(tmp_path: Path) -> None:
    """Found by the new-user trial: CONNECTSW_FEEDBACK held every round's feedback, and
    past 128 KiB (Linux's limit for one variable) the command could not start
    ("cannot run /bin/sh: Argument list too long"). The newest feedback is kept."""
    ctx = make_ctx(tmp_path, command='printf %s "$CONNECTSW_FEEDBACK" > fb.txt')
    ctx.feedback = [f"round {i} " + "y" * 9_990 for i in range(20)]
    ShellAgent().run(ctx)
    kept = (tmp_path / "fb.txt").read_text()
    assert len(kept.encode()) <= FEEDBACK_ENV_BYTES
    assert kept.endswith(ctx.feedback[-1]) and kept.startswith("round ")
    assert "round 0 " not in kept


@pytest.mark.parametrize("char", ["x", "é", "😀"])
def test_one_feedback_item_over_the_bound_is_cut_to_it(tmp_path: Path, char: str) -> None:
    """Found by the new-user trial (8b, F6): the newest feedback item was kept whole even
    when it alone was over 64 KiB (80,071 bytes seen); from 128 KiB the remediation
    round's command could not start ("Argument list too long"). Its head is kept, the
    cut is said, and no UTF-8 character is split."""
    ctx = make_ctx(tmp_path, command='printf %s "$CONNECTSW_FEEDBACK" > fb.txt')
    item = "gate failed: " + char * (200 * 1024 // len(char.encode()))
    ctx.feedback = ["an older round", item]
    ShellAgent().run(ctx)  # the command starts and runs
    kept = (tmp_path / "fb.txt").read_bytes()
    assert FEEDBACK_ENV_BYTES - 100 < len(kept) <= FEEDBACK_ENV_BYTES
    text = kept.decode("utf-8")  # strict: no character was split
    head, _, note = text.rpartition("\n")
    assert item.startswith(head) and "an older round" not in text
    total = len(item.encode())
    assert note == f"[... {total - len(head.encode())} of {total} bytes cut]"


@pytest.mark.parametrize("field", ["command", "env"])
def test_a_command_or_variable_too_long_to_start_is_refused_before_running(
    tmp_path: Path, field: str
) -> None:
    """A command (or an ``env`` value) longer than one argument may be was refused by
    the kernel only when the task ran; it is refused when the plan is made."""
    long = "é" * (MAX_ARGUMENT_BYTES // 2 + 1)  # two bytes each in UTF-8
    with_ = (
        {"command": f"echo {long}"}
        if field == "command"
        else {"command": "true", "env": {"V": long}}
    )
    with pytest.raises(ValidationError, match=f"at most {MAX_ARGUMENT_BYTES} bytes"):
        ShellInput.model_validate(with_)
    ShellInput.model_validate({"command": "echo " + "x" * (MAX_ARGUMENT_BYTES - 5)})


@pytest.mark.parametrize(
    ("with_", "message"),
    [
        ({"env": {"A=B": "x"}}, "env variable name 'A=B' contains '='"),
        ({"env": {"": "x"}}, "env has an empty variable name"),
        ({"env": {"A": "x\x00y"}}, "holds a NUL character"),
        ({"pass_env": ["A=B"]}, "pass_env variable name 'A=B'"),
        ({"pass_env": [""]}, "pass_env has an empty variable name"),
        ({"pass_env": ["PGPASSWORD", "PGPASSWORD"]}, "names 'PGPASSWORD' twice"),
        ({"env": {"FOO": "x"}, "pass_env": ["FOO"]}, "'FOO' is in both env and pass_env"),
        ({"outputs": ["a.txt", "./a.txt"]}, "output './a.txt' names 'a.txt' again"),
    ],
)
def test_environment_and_outputs_the_command_cannot_take_are_refused_before_running(
    tmp_path: Path, with_: dict[str, object], message: str
) -> None:
    """Trial 7, F7: ``env: {"A=B": x}`` was accepted and stored, then the task failed
    with Python's ``ValueError: illegal environment variable name``; a variable in
    both ``env`` and ``pass_env`` was last-one-wins. Refused with the plan."""
    with pytest.raises(ValidationError, match=message):
        ShellInput.model_validate({"command": "true", **with_})
    graph = tmp_path / "graph.json"
    graph.write_text(
        json.dumps(
            {
                "name": "x",
                "tasks": [{"id": "a", "agent": "shell", "with": {"command": "touch ran", **with_}}],
            }
        )
    )
    with pytest.raises(PlanError, match="task 'a' \\(shell\\): with|NUL character"):
        Planner().plan(Request(command="run", args=[str(graph)]))
    assert not (tmp_path / "ran").exists()


def test_outputs_are_normalised(tmp_path: Path) -> None:
    spec = ShellInput.model_validate({"command": "true", "outputs": ["./out//a.txt", "b/../c"]})
    assert spec.outputs == ["out/a.txt", "c"]
    out = ShellAgent().run(
        make_ctx(tmp_path, command="mkdir out; echo hi > out/a.txt", outputs=["./out//a.txt"])
    )
    assert [(a.path, a.preview) for a in out.artifacts] == [("out/a.txt", "hi\n")]


def test_missing_declared_output_fails(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="did not write declared output 'x.txt'"):
        ShellAgent().run(make_ctx(tmp_path, command="true", outputs=["x.txt"]))


def test_memory_stays_flat_with_400mb_of_output(tmp_path: Path) -> None:
    # Issue 5, fault 5: 400 MB on stdout or in a declared output took connectsw to ~1 GB.
    script = textwrap.dedent(
        """
        import resource
        from pathlib import Path
        from connectsw.agents.base import TaskContext
        from connectsw.agents.shell import ShellAgent
        from connectsw.core.models import Request, TaskSpec

        def ctx(with_):
            return TaskContext(
                execution_id="e", task=TaskSpec(id="t", agent="shell", **{"with": with_}),
                workspace=Path("."), request=Request(command="run"),
            )

        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        a = ShellAgent().run(ctx({"command": "head -c 200000000 /dev/zero | tr '\\\\0' x"}))
        b = ShellAgent().run(ctx({
            "command": "head -c 200000000 /dev/zero | tr '\\\\0' y > big.txt",
            "outputs": ["big.txt"],
        }))
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(len(a.outputs["output"]), len(b.artifacts[0].preview), after - before)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    kept, preview, growth_kib = map(int, proc.stdout.split())
    assert kept < 5000
    assert preview == 400
    assert growth_kib < 50 * 1024


@pytest.mark.timeout(30)
def test_a_declared_output_that_is_a_fifo_fails_the_task_at_once(tmp_path: Path) -> None:
    # Trial 5 item 3: reading the FIFO for its preview waited for a writer for ever.
    started = time.monotonic()
    with pytest.raises(TaskError, match=r"'p.txt' is a named pipe \(FIFO\), not a regular file"):
        ShellAgent().run(make_ctx(tmp_path, 5, command="mkfifo p.txt", outputs=["p.txt"]))
    assert time.monotonic() - started < 5


@pytest.mark.timeout(30)
def test_a_declared_output_that_is_a_link_to_a_fifo_fails_the_task(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="'out.txt' is a named pipe"):
        ShellAgent().run(
            make_ctx(tmp_path, 5, command="mkfifo p; ln -s p out.txt", outputs=["out.txt"])
        )
