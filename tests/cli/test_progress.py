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
