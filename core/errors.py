"""The exceptions ConnectSW raises; the user sees their message, never a traceback.

They are converted only at the edges: the CLI prints ``Error: <message>`` and exits
with :attr:`ConnectSWError.exit_code`; the API answers JSON with :attr:`code`.
"""

from __future__ import annotations

import logging
import os
import re
from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Only for the annotation: importing pydantic costs the light commands (--help) ~40 ms.
    from pydantic import ValidationError


class ExitCode(IntEnum):
    """Every exit status of the ``connectsw`` command, in one place.

    Scripts may rely on these numbers. 130 is the shell's convention for a
    process ended by SIGINT (128 + 2); 70 is ``EX_SOFTWARE`` from BSD's
    ``sysexits.h`` (a bug in ConnectSW, not in the input).
    """

    OK = 0
    """The command did what was asked (an execution completed or is waiting at a checkpoint)."""
    FAILED = 1
    """An execution failed or a quality gate stopped it (``gates check``: the gate failed)."""
    INVALID_INPUT = 2
    """An invalid plan, task graph, request or config (also click's usage errors)."""
    PLUGIN = 3
    """A plugin failed: to load, in a ``register_*`` hook, by registering something
    invalid (a class instead of an instance), or in its code at run time (a workflow's
    ``claims``/``decompose``, ``register_commands``, a plugin's command). The one-line
    message names the plugin, its entry point, the exception's type, message and
    ``file:line``, and the ``CONNECTSW_LOAD_PLUGINS`` value that leaves it out."""
    NOT_FOUND = 4
    """No such execution, task or checkpoint."""
    NOT_ALLOWED = 5
    """Not allowed in the execution's current state (e.g. a checkpoint already decided)."""
    STORE = 6
    """The store could not be read or written."""
    ERROR = 7
    """Any other ConnectSW error: not an execution failure, not one of the kinds above."""
    CANCELLED = 8
    """The execution was cancelled (at a prompt, or by another process while it ran)."""
    INTERNAL = 70
    """An unexpected exception: a bug (``CONNECTSW_DEBUG=1`` shows its traceback)."""
    HANGUP = 129
    """SIGHUP (the terminal or ssh session closed): handled as Ctrl-C is, exit 128 + 1."""
    INTERRUPTED = 130
    """Ctrl-C (SIGINT) or an aborted prompt; an interrupted execution can be resumed."""
    TERMINATED = 143
    """SIGTERM (a CI timeout, ``docker stop``): handled as Ctrl-C is, work stopped and the
    resume hint printed, exit 128 + 15 as the signal's own."""


class ConnectSWError(Exception):
    """Base class: the message is shown to the user as one line."""

    code = "error"
    exit_code: ExitCode = ExitCode.ERROR


class ConfigError(ConnectSWError):
    """Settings or a config file are invalid."""

    code = "invalid_config"
    exit_code = ExitCode.INVALID_INPUT


class PlanError(ConnectSWError):
    """A request or a task-graph file cannot become a valid plan."""

    code = "invalid_plan"
    exit_code = ExitCode.INVALID_INPUT


class InvalidInput(ConnectSWError):
    """A value given on the command line or to the API is invalid (e.g. a memory's type)."""

    code = "invalid_input"
    exit_code = ExitCode.INVALID_INPUT


class PluginError(ConnectSWError):
    """A plugin failed to load, registered something invalid or raised at run time."""

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


class HeldElsewhere(InvalidState):
    """Another live process runs the execution: it holds the lease (exit 5).

    Raised when this process would take the execution over (``resume``, ``status``
    of an interrupted one, a server's restart) and another took it first, or its
    owner is still alive. A read-only caller (``status``) shows the state instead:
    losing that race is not an error for it (issue 5, kinds 3 and 11). Its ``code``
    stays ``invalid_state`` for API clients.
    """


class Cancelled(InvalidState):
    """The execution was cancelled: nothing more can be decided or run (exit 8)."""

    code = "cancelled"
    exit_code = ExitCode.CANCELLED


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
    exit_code = ExitCode.FAILED


class WorkspacePathError(TaskError, ValueError):
    """A path an agent gave is not one it may use: outside the workspace, or inside git's
    own ``.git`` directory. A :class:`TaskError` (the task fails with the message) and a
    ``ValueError`` (for callers that catch one)."""

    code = "invalid_path"


class TaskTimeout(TaskError):
    """An agent ran past its task's timeout."""

    code = "task_timeout"


class LLMError(TaskError):
    """A language-model provider could not answer (agents/llm/).

    The message is one line naming the provider, its host and what to fix; it
    never holds an API key (keys are scrubbed from whatever a server answers).
    """

    code = "llm_error"


class LLMAuthError(LLMError):
    """The provider refused the API key (HTTP 401 or 403)."""

    code = "llm_auth"


class LLMModelNotFound(LLMError):
    """The provider has no such model (HTTP 404, or an error code ``model_not_found``)."""

    code = "llm_model_not_found"


class LLMBadResponse(LLMError):
    """The provider's answer is not the protocol's JSON (malformed, or fields missing)."""

    code = "llm_bad_response"


class LLMTimeout(LLMError):
    """The provider did not answer within the call's timeout."""

    code = "llm_timeout"


_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` with every surrogate code point replaced by U+FFFD, so that it can be
    encoded as UTF-8 (stored, sent as JSON, printed). A surrogate reaches a text from
    bytes decoded with ``surrogateescape`` (file names, arguments, environment) or an
    agent's own string; stored as is, it made the whole record unwritable."""
    return _SURROGATE.sub("\ufffd", text)


def is_utf8(text: str) -> bool:
    """False when ``text`` holds a surrogate: bytes that were not valid UTF-8, decoded
    with ``surrogateescape`` (an argument, a path, a file name)."""
    return _SURROGATE.search(text) is None


def shown(text: str) -> str:
    """``text`` for a message, its undecodable bytes written ``\\xe9`` (as the shell's
    ``$'\\xe9'`` quoting gives them)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def one_line(exc: BaseException, typed: bool = False) -> str:
    """The first line of an exception's message, for a user or a record; storable
    (:func:`storable`: surrogates replaced).

    ``typed`` names the type of exceptions that are not ConnectSW's own (whose
    messages are written for users): ``RuntimeError: kaboom``.
    """
    text = storable(str(exc).strip())
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
        elif err["type"] == "value_error" and "error" in err.get("ctx", {}):
            msg = str(err["ctx"]["error"])  # our validators' own words, not "Value error, ..."
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


class UnwritableRecord(StoreError):
    """A record can never be written (e.g. it holds a value JSON cannot represent).

    Not retryable: a write-behind log drops it instead of retrying forever.
    """

    code = "unwritable_record"


def log_one_line(logger: logging.Logger, what: str, exc: BaseException) -> None:
    """Log ``what: <exc's first line>`` as one warning line, for a background thread's
    failure (a store gone away under a running stage: trial 8b F8 printed a traceback
    per heartbeat and per progress poll). The traceback only with ``CONNECTSW_DEBUG``."""
    debug = bool(os.environ.get("CONNECTSW_DEBUG"))
    logger.warning("%s: %s", what, one_line(exc, typed=True), exc_info=exc if debug else None)
