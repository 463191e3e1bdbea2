"""Server mode's ``status``: one execution's view, or the license's executions."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text

from connectsw.cli.context import console, print_json
from connectsw.cli.output_json import stage_number
from connectsw.cli.remote import Remote
from connectsw.cli.render import id_table, report, status_text
from connectsw.core.models import ExecutionStatus


def remote_status(remote: Remote, execution_id: str | None, limit: int, as_json: bool) -> int:
    """Print as local ``status`` does; returns the exit code. The server resumes
    nothing on a read: ``connectsw resume ID`` does."""
    from connectsw.cli.remote_drive import view

    if execution_id is not None:
        return report(view(remote, execution_id), as_json)
    rows = remote.call("GET", f"/v1/executions?limit={min(limit, 1000)}")["executions"]
    if as_json:
        print_json(
            [
                {
                    "executionId": r["executionId"],
                    "status": r["status"],
                    "plan": r["plan"],
                    "stage": stage_number(r["stage"]),
                    "stages": r["stages"],
                    "updatedAt": r["updatedAt"],
                }
                for r in rows
            ]
        )
        return 0
    table = id_table("execution", "status", "plan", "stage", "updated", header_style="bold")
    for r in rows:
        table.add_row(
            r["executionId"],
            status_text(ExecutionStatus(r["status"])),
            Text(r["plan"]),
            f"{stage_number(r['stage'])}/{r['stages']}",
            f"{datetime.fromisoformat(r['updatedAt']):%Y-%m-%d %H:%M}",
        )
    console.print(table if rows else "No executions yet.")
    return 0
