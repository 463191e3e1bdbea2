"""Event lines: text from tasks, users and plugins is printed as it is, never as markup."""

from __future__ import annotations

import io

from rich.console import Console

from connectsw.cli.progress import describe
from connectsw.core.models import Event


def printed(event: Event) -> str:
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(describe(event), soft_wrap=True)
    return out.getvalue().rstrip("\n")


def test_markup_like_text_is_printed_literally() -> None:
    message = "C:\\[x] then [/bold] and [red]not red[/red]"
    event = Event(
        execution_id="exec_1", kind="task.failed", task_id="a", message=message, data={"attempt": 2}
    )
    assert printed(event) == f"{'task.failed':<22} a {message} (attempt 2)"


def test_an_event_without_a_task() -> None:
    event = Event(execution_id="exec_1", kind="stage.started", message="design")
    assert printed(event) == f"{'stage.started':<22} design"


def test_a_long_or_multi_line_message_is_one_bounded_line() -> None:
    """Trial 7, F6: a 15 MB summary was printed as one 15 MB line."""
    long = Event(execution_id="exec_1", kind="task.succeeded", task_id="x", message="y" * 100_000)
    assert printed(long) == f"{'task.succeeded':<22} x {'y' * 300}…"
    lines = Event(execution_id="exec_1", kind="task.failed", task_id="x", message="first\nsecond")
    assert printed(lines) == f"{'task.failed':<22} x first …"


def test_an_agents_summary_is_cut_in_its_event_and_kept_whole_in_its_record() -> None:
    from connectsw.core.models import TaskResult, TaskStatus
    from connectsw.core.runner import EVENT_TEXT_CHARS, task_event

    summary = "z" * 15_000_000
    result = TaskResult(
        execution_id="exec_1", task_id="x", status=TaskStatus.SUCCEEDED, summary=summary
    )
    event = task_event(result, "task.succeeded", summary, 0)
    assert (
        event.message
        == "z" * EVENT_TEXT_CHARS + f"… ({15_000_000 - EVENT_TEXT_CHARS} more characters)"
    )
    assert result.summary == summary
