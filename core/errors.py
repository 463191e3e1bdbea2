"""The exceptions ConnectSW raises; the user sees their message, never a traceback.

They are converted only at the edges: the CLI prints ``Error: <message>`` and exits
with :attr:`ConnectSWError.exit_code`; the API answers JSON with :attr:`code`.
"""

from __future__ import annotations

from enum import IntEnum

from pydantic import ValidationError


class ExitCode(IntEnum):
    """Every exit code of the ``connectsw`` command, in one place."""

    OK = 0
    FAILED = 1  # an execution failed or a gate stopped it
    INVALID_INPUT = 2  # invalid plan or config
    PLUGIN = 3
    NOT_FOUND = 4
    NOT_ALLOWED = 5  # not allowed in this state (e.g. already decided)
    STORE = 6
    ERROR = 7  # any other error ConnectSW reports
    INTERNAL = 70
    INTERRUPTED = 130


class ConnectSWError(Exception):
    """Base class: the message is shown to the user as one line."""

    code = "error"
    exit_code: int = ExitCode.ERROR


class ConfigError(ConnectSWError):
    """Settings or a config file are invalid."""

    code = "invalid_config"
    exit_code = ExitCode.INVALID_INPUT


class PlanError(ConnectSWError):
    """A request or a task-graph file cannot become a valid plan."""

    code = "invalid_plan"
    exit_code = ExitCode.INVALID_INPUT


class PluginError(ConnectSWError):
    """A plugin failed to load or registered something invalid."""

    code = "plugin_error"
    exit_code = ExitCode.PLUGIN


class NotFound(ConnectSWError):
    """An execution, task or checkpoint does not exist."""

    code = "not_found"
    exit_code = ExitCode.NOT_FOUND


class InvalidState(ConnectSWError):
    """The operation is not allowed in the execution's current state."""

    code = "invalid_state"
    exit_code = ExitCode.NOT_ALLOWED


class StoreError(ConnectSWError):
    """State could not be read or written (the store or a worker's task log failed)."""

    code = "store_error"
    exit_code = ExitCode.STORE


class Conflict(InvalidState):
    """Someone else changed the execution first (e.g. a checkpoint already decided)."""

    code = "conflict"


class LeaseLost(ConnectSWError):
    """This process no longer owns the execution: another one took its lease over.

    Raised by fenced writes (reference: a lease with a fencing token); the
    process stops its work and writes nothing more for that execution.
    """

    code = "lease_lost"
    exit_code = ExitCode.NOT_ALLOWED


class TaskError(ConnectSWError):
    """An agent could not complete its task (retried by the engine)."""

    code = "task_failed"


class TaskTimeout(TaskError):
    """An agent ran past its task's timeout."""

    code = "task_timeout"


def one_line(exc: BaseException, typed: bool = False) -> str:
    """The first line of an exception's message, for a user or a record.

    ``typed`` names the type of exceptions that are not ConnectSW's own (whose
    messages are written for users): ``RuntimeError: kaboom``.
    """
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if not first:
        return type(exc).__name__
    if typed and not isinstance(exc, ConnectSWError):
        return f"{type(exc).__name__}: {first}"
    return first


def describe_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """Render a pydantic error as ``field: message`` lines joined by '; '."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        where = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "input"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


class UnwritableRecord(StoreError):
    """A record the store can never write (e.g. task outputs JSON cannot represent).

    Not worth retrying: a write-behind log drops the record and reports this message.
    """

    code = "unwritable_record"
