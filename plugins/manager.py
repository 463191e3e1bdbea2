"""The plugin manager: built-in plugins and installed distributions, loaded once.

Built-ins are registered through the same path as third-party plugins. Each plugin
loads on its own: one that fails (at import, at registration, with an unknown
hook, or later in a ``register_*`` hook) is left out and recorded with its error;
the others load, and ``connectsw plugins`` shows it. Only plans that need what it
may provide fail (see :func:`broken_plugin_hint`).

Environment:

- ``CONNECTSW_LOAD_PLUGINS``: comma-separated entry-point or distribution names
  of the only third-party plugins to load (empty: none); the others are listed
  as ``skipped`` and not imported. A name that no installed plugin has is a
  warning on stderr naming it and the installed ones. When a plan needs an agent,
  workflow, command or gate rule no loaded plugin has, the plugins left out are
  asked (imported then) and the error names the one that provides it and the
  value of ``CONNECTSW_LOAD_PLUGINS`` that includes it.
- ``CONNECTSW_STRICT_PLUGINS=1``: any plugin problem (a failed plugin, a hook
  function that is not marked ``@connectsw.hookimpl``, an entry point with no
  hooks, an unknown name in ``CONNECTSW_LOAD_PLUGINS``; then a ``register_commands``
  or a workflow's ``claims`` that raises) is a :class:`PluginError` (exit 3) naming
  the plugin; for CI.
- ``CONNECTSW_TRACE_PLUGINS=1``: trace on stderr, one line per step, always
  ``[connectsw trace] HOOK PLUGINS: WHAT``: each plugin's ``import`` and
  ``register`` (``done in N ms`` or ``failed: ...``, an unknown hook included),
  each hook call (``call``, then ``done in N ms`` or ``failed: ...``; a
  ``register_*`` hook adds ``(N registered)``) and each thing a plugin registered
  (``registered agent "x"``, ``registered workflow "x" (commands: ...)``,
  ``registered command "x"``...). PLUGINS is one plugin name, or several joined
  by commas (no space) for a hook called on every plugin at once.
- ``CONNECTSW_PLUGIN_IMPORT_TIMEOUT``: seconds a third-party plugin's import may
  take (default :data:`DEFAULT_IMPORT_TIMEOUT`), and each call of one of its
  registration hooks (``register_agents``... ``register_commands``); one that takes
  longer is ``failed`` ("its import did not finish within N s", "register_agents did
  not return within N s"; a ``register_commands`` that does not return is a warning,
  as one that raises) and the others load (each Dask worker process loads plugins
  too, and waits as long once more). The import or call runs in a daemon thread
  (:func:`call_bounded`, the one mechanism for every hook call, event listeners
  included) that is then abandoned (Python cannot stop it); it ends with the
  process. A plugin whose hook did not return is not asked anything else.
  The same bound holds for plugin code called at run time (:func:`call_plugin`): a
  workflow's ``claims`` and ``decompose``, an agent's ``input_model``, an embedder's
  ``embed``.
- ``CONNECTSW_PLUGIN_LISTENER_TIMEOUT``: seconds one call of an event listener
  (``on_execution_event``, ``on_task_event``, ``on_checkpoint_event``) may take
  (default :data:`DEFAULT_LISTENER_TIMEOUT`); past it the command goes on without
  waiting, with one warning naming the plugin and the hook, and that listener is
  not called again in the process (:mod:`connectsw.core.events`).

Light commands (``connectsw --help``, ``cancel``, a decision with ``--no-run``)
need plugins only for their command list or event hooks: they call
:func:`wait_briefly` first, and then wait at most :data:`LIGHT_IMPORT_WAIT` seconds
in all for third-party imports and registration hooks (each at least
:data:`LIGHT_MIN_WAIT`), so a plugin that hangs at import or in a ``register_*``
hook delays them by about a second. A plugin cut short this way is ``failed`` in
that process only ("its import did not finish within the 1 s a light command
waits", "register_agents did not return within the 1 s a light command waits");
its event hooks are not called there, and ``--help`` says its commands are not
listed.

What plugin code prints to stdout (at import, in hooks, agents, workflows and gate
rules) goes to stderr (:mod:`connectsw.plugins.output`): with ``--json``, stdout
holds only the JSON.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import inspect
import math
import os
import re
import sys
import sysconfig
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import pluggy

from connectsw.core.errors import ConfigError, ConnectSWError, PluginError, one_line, storable
from connectsw.plugins import hookspecs
from connectsw.plugins.environment import (
    IMPORT_TIMEOUT_ENV,
    LISTENER_TIMEOUT_ENV,
    LOAD_ENV,
    STRICT_ENV,
    TRACE_ENV,
)
from connectsw.plugins.environment import flag as _flag
from connectsw.plugins.output import plugin_output_to_stderr

if TYPE_CHECKING:
    import click

ENTRY_POINT_GROUP = "connectsw"
DEFAULT_PLUGINS = (
    "connectsw.agents.builtin",
    "connectsw.core.workflows",
    "connectsw.gates.rules",
    "connectsw.core.memory_embedders",
    "connectsw.agents.llm.builtin",
)
DEFAULT_IMPORT_TIMEOUT = 10.0
"""Seconds a third-party plugin's import may take before it counts as failed."""
LIGHT_IMPORT_WAIT = 1.0
"""Seconds, in all, a light command waits for third-party imports (:func:`wait_briefly`)."""
LIGHT_MIN_WAIT = 0.25
"""Seconds each import still gets in a light command once the wait is spent."""
LIGHT_WAITS = f"within the {LIGHT_IMPORT_WAIT:g} s a light command waits"
"""How the error of a plugin a light command stopped waiting for ends."""
LIGHT_CUT_SHORT = f"its import did not finish {LIGHT_WAITS}"
"""The error of a plugin whose import a light command stopped waiting for."""
DEFAULT_LISTENER_TIMEOUT = 10.0
"""Seconds one call of a plugin's event listener is waited for (issue 5, kind 7)."""
HOOK_NAMES = frozenset(
    name for name, fn in vars(hookspecs).items() if hasattr(fn, "connectsw_spec")
)

_lock = threading.Lock()
_pm: pluggy.PluginManager | None = None

Status = Literal["loaded", "failed", "skipped"]


@dataclass
class PluginSource:
    """Where a plugin came from and how loading it went.

    ``status`` is ``loaded``, ``failed`` (``error`` says why, as ``Type: first
    line``; nothing of the plugin is used) or ``skipped`` (left out by
    ``CONNECTSW_LOAD_PLUGINS`` or a second entry point of the same name; not
    imported). ``warnings`` are problems that did not stop it loading.
    ``offered`` names what a plugin that failed in a ``register_*`` hook tried to
    register (``{"agent": [...]}``); empty when unknown (it failed earlier).
    ``entry_point`` is the entry point's value (``module:attr``; None for a
    built-in); ``commands`` the CLI commands its ``register_commands`` added, as
    ``(name, first line of help)``; ``left_out`` is True when
    ``CONNECTSW_LOAD_PLUGINS`` skipped it.
    """

    name: str
    builtin: bool
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    status: Status = "loaded"
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    offered: dict[str, list[str]] = field(default_factory=dict)
    entry_point: str | None = None
    commands: list[tuple[str, str]] = field(default_factory=list)
    left_out: bool = False
    command_error: BaseException | None = field(default=None, repr=False, compare=False)

    @property
    def hint(self) -> str:
        """How to leave this plugin out: the exact setting (empty for a built-in).

        ``set CONNECTSW_LOAD_PLUGINS=a,b`` names every other third-party plugin this
        process loads, leaving out the failed ones too (nothing of those is used), so
        the setting leaves no failed plugin (``CONNECTSW_LOAD_PLUGINS=`` when none is left).
        """
        if self.builtin:
            return ""
        failed = {s.name for s in _sources.values() if s.status == "failed"}
        others = included_plugins() - {self.name} - failed
        uninstall = f", or `pip uninstall {self.distribution}`" if self.distribution else ""
        return f"set {LOAD_ENV}={','.join(sorted(others))}{uninstall}"

    @property
    def origin(self) -> str:
        """``entry point NAME = module:attr, distribution VERSION`` (empty for a built-in)."""
        if self.builtin or self.entry_point is None:
            return ""
        dist = f", {self.distribution} {self.version}" if self.distribution else ""
        return f"entry point {self.name} = {self.entry_point}{dist}"

    def problems(self) -> list[str]:
        """The error and warnings of this plugin, each one line."""
        return ([f"failed to load: {self.error}"] if self.error else []) + self.warnings


_sources: dict[str, PluginSource] = {}
_skipped_eps: dict[str, EntryPoint] = {}
_unknown_allowed: list[str] = []
"""The warning about names in CONNECTSW_LOAD_PLUGINS no plugin has (none or one)."""
_probed: dict[str, dict[str, list[str]]] = {}


def included_plugins() -> set[str]:
    """Names of the third-party plugins this process did not leave out (loaded or failed)."""
    return {s.name for s in _sources.values() if not s.builtin and not s.left_out}


def tracing_enabled() -> bool:
    """True when ``CONNECTSW_TRACE_PLUGINS`` asks for hook tracing."""
    return _flag(TRACE_ENV)


def strict_enabled() -> bool:
    """True when ``CONNECTSW_STRICT_PLUGINS`` makes any plugin problem an error
    (not inside :func:`strict_deferred`)."""
    return _flag(STRICT_ENV) and not _strict_deferred.is_set()


_strict_deferred = threading.Event()


@contextlib.contextmanager
def strict_deferred() -> Iterator[None]:
    """Load and list plugins without strict mode's error, then raise it on leaving
    (``connectsw plugins`` shows every problem before it exits 3 in strict mode)."""
    _strict_deferred.set()
    try:
        yield
    finally:
        _strict_deferred.clear()
    check_strict()


def trace(hook: str, plugins: str, what: str) -> None:
    """Write ``[connectsw trace] HOOK PLUGINS: WHAT`` to stderr (only when tracing).

    The one trace format: ``plugins`` is a plugin name, or names joined by commas.
    """
    if tracing_enabled():
        print(f"[connectsw trace] {hook} {plugins}: {what}", file=sys.stderr, flush=True)


def _trace_summary(kwargs: Mapping[str, Any]) -> str:
    """What a hook call is about, for its trace line (an event's kind)."""
    event = kwargs.get("event")
    kind = getattr(event, "kind", None)
    return f" ({getattr(kind, 'value', kind)})" if kind is not None else ""


def _monitor(pm: pluggy.PluginManager) -> None:
    """Trace every call made through ``pm.hook`` (the event hooks) in the one format."""
    started: list[float] = []

    def before(hook: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]) -> None:
        started.append(time.perf_counter())
        names = ",".join(i.plugin_name for i in reversed(impls)) or "-"
        trace(hook, names, f"call{_trace_summary(kwargs)}")

    def after(
        outcome: Any, hook: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]
    ) -> None:
        elapsed = (time.perf_counter() - started.pop()) * 1000 if started else 0.0
        names = ",".join(i.plugin_name for i in reversed(impls)) or "-"
        exc = getattr(outcome, "exception", None)
        if exc is not None:
            trace(hook, names, f"failed: {describe_error(exc)}")
        else:
            trace(hook, names, f"done in {elapsed:.2f} ms")

    pm.add_hookcall_monitoring(before, after)


_light = threading.Event()
_light_deadline: float | None = None
"""``time.monotonic()`` past which a light command waits for no more plugin code."""


def wait_briefly() -> None:
    """Make this process's plugin loading a light command's, if it has not happened yet:
    third-party imports are waited for at most :data:`LIGHT_IMPORT_WAIT` seconds in all
    (each at least :data:`LIGHT_MIN_WAIT`). For commands that need plugins only for
    their command list or event hooks; never for one that runs tasks."""
    _light.set()


def cut_short() -> list[PluginSource]:
    """The plugins a light command stopped waiting for (see :func:`wait_briefly`);
    loads nothing."""
    with _lock:
        return [s for s in _sources.values() if (s.error or "").endswith(LIGHT_WAITS)]


def import_timeout() -> float:
    """Seconds a plugin's import may take (``CONNECTSW_PLUGIN_IMPORT_TIMEOUT``, default 10).

    Raises:
        ConfigError: the variable is set but not a finite number of seconds above 0.
    """
    return _seconds(IMPORT_TIMEOUT_ENV, DEFAULT_IMPORT_TIMEOUT)


def listener_timeout() -> float:
    """Seconds one event-listener call is waited for (``CONNECTSW_PLUGIN_LISTENER_TIMEOUT``,
    default 10).

    Raises:
        ConfigError: the variable is set but not a finite number of seconds above 0.
    """
    return _seconds(LISTENER_TIMEOUT_ENV, DEFAULT_LISTENER_TIMEOUT)


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"{name} must be a finite number of seconds above 0")
    return seconds


class _ImportTimeout(Exception):
    """A plugin's import did not finish in time (recorded as its error)."""


class _HookTimeout(Exception):
    """A plugin's hook did not return in time (its message is the whole error)."""


class _Unfinished:
    """The result of a :func:`call_bounded` call still running at its bound."""


UNFINISHED: Any = _Unfinished()
"""What :func:`call_bounded` returns for a call that did not return in time."""


def is_plugin_failure(exc: BaseException) -> bool:
    """Whether ``exc``, raised by plugin code called in this thread, is that plugin's
    failure: every ``Exception``, and the exits its code raised itself (``SystemExit``,
    ``GeneratorExit``; ``KeyboardInterrupt`` off the main thread, where no signal is
    delivered). A Ctrl-C in the main thread is not: it interrupts the command.

    Uncaught, a ``sys.exit(0)`` in a gate rule or an agent's ``input_model`` ended the
    command with exit 0 and nothing done (trial 7, F11).
    """
    if isinstance(exc, Exception | SystemExit | GeneratorExit | _PluginExit):
        return True  # _PluginExit: its os._exit, raised instead
    return (
        isinstance(exc, KeyboardInterrupt)
        and threading.current_thread() is not threading.main_thread()
    )


class _PluginExit(BaseException):
    """Raised in place of ``os._exit(status)`` called by plugin code in :func:`call_bounded`'s
    thread: a BaseException, so that it unwinds the plugin's code as ``SystemExit`` does."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


_in_plugin_call = threading.local()
_guard_lock = threading.Lock()
_exit_guard: tuple[int, Any] | None = None  # (pid it was installed in, the real os._exit)


def _guard_exit() -> None:
    """Make ``os._exit`` called by plugin code inside :func:`call_bounded` (in this process)
    raise :class:`_PluginExit` instead of ending the process. Anywhere else (another
    thread, a forked child) it is the real one.

    Written here because nothing else can stop it: ``os._exit(0)`` at a plugin's import
    or in its hook ended ``run`` with exit 0 and no work done (trial 7, F4).
    """
    global _exit_guard
    with _guard_lock:
        if _exit_guard is not None and _exit_guard[0] == os.getpid():
            return
        real = _exit_guard[1] if _exit_guard is not None else os._exit
        _exit_guard = (os.getpid(), real)

        def guarded(status: int) -> NoReturn:
            guard = _exit_guard
            if (
                guard is not None
                and guard[0] == os.getpid()
                and getattr(_in_plugin_call, "active", False)
            ):
                raise _PluginExit(status)
            real(status)
            raise AssertionError("unreachable")  # pragma: no cover

        os._exit = guarded


def call_bounded(function: Any, kwargs: Mapping[str, Any], bound: float, name: str) -> Any:
    """``function(**kwargs)`` in a daemon thread, waited for at most ``bound`` seconds.

    The one way plugin code that may hang is called (imports, ``register_*`` hooks,
    ``register_commands``, event listeners; issue 5, kind 7). Returns what the call
    returned, or :data:`UNFINISHED` when it is still running after ``bound`` seconds:
    the thread is then abandoned (Python cannot stop a thread; a daemon thread ends
    with the process). What the call prints goes to stderr
    (:func:`plugin_output_to_stderr`). ``name`` names the thread (``connectsw-NAME``).

    Raises:
        BaseException: what the call raised, even ``SystemExit`` (an import may exit);
            a ``KeyboardInterrupt`` it raised, or an ``os._exit`` it called, is a
            :class:`PluginError` (a real Ctrl-C reaches the caller's main thread, and
            is raised there as it is).
    """
    outcome: dict[str, Any] = {}
    _guard_exit()

    def target() -> None:
        _in_plugin_call.active = True
        try:
            with plugin_output_to_stderr():  # this thread's prints: the plugin's
                outcome["value"] = function(**kwargs)
        except _PluginExit as exc:
            outcome["error"] = PluginError(f"its code called os._exit({exc.status})")
        except KeyboardInterrupt:
            # Signals reach the main thread only: this one the plugin's code raised
            # itself. Re-raised as it is, every command loading plugins said
            # "Interrupted" and exited 130, for ever (trial 7, F3).
            outcome["error"] = PluginError("KeyboardInterrupt raised by its code (not a Ctrl-C)")
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=f"connectsw-{name}", daemon=True)
    thread.start()
    thread.join(bound)
    if thread.is_alive():
        return UNFINISHED
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def hook_bound(hook: str) -> tuple[float, str]:
    """Seconds one call of registration hook ``hook`` may take, and the plugin's error
    past it: ``CONNECTSW_PLUGIN_IMPORT_TIMEOUT`` (the bound of an import), or in a
    light command what is left of :data:`LIGHT_IMPORT_WAIT` (at least
    :data:`LIGHT_MIN_WAIT`; see :func:`wait_briefly`).

    Raises:
        ConfigError: ``CONNECTSW_PLUGIN_IMPORT_TIMEOUT`` is not a number of seconds above 0.
    """
    timeout = import_timeout()
    deadline = _light_deadline
    if _light.is_set() and deadline is not None:
        left = max(deadline - time.monotonic(), LIGHT_MIN_WAIT)
        if left < timeout:
            return left, f"{hook} did not return {LIGHT_WAITS}"
    return timeout, f"{hook} did not return within {timeout:g} s"


def is_builtin(plugin: str) -> bool:
    """Whether ``plugin`` (a registry's owner name) is one of ConnectSW's built-ins."""
    return plugin in DEFAULT_PLUGINS


def call_plugin(plugin: str, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)``, plugin code called at run time (a workflow's
    ``claims``/``decompose``, an agent's ``input_model``, an embedder's ``embed``),
    bounded as a registration hook is (:func:`hook_bound`, ``CONNECTSW_PLUGIN_IMPORT_TIMEOUT``)
    through :func:`call_bounded`. A call into a built-in is made directly.

    Raises:
        PluginError: the call did not return in time (``plugin "p" failed: WHAT did not
            return within N s; ...``, :func:`plugin_code_error`); the abandoned thread
            ends with the process (trial 8b, F3 and F4: such calls hung every request).
        BaseException: what the call raised, as it is.
    """
    if is_builtin(plugin):
        return function(*args, **kwargs)
    bound, late = hook_bound(what)
    try:
        result = call_bounded(lambda: function(*args, **kwargs), {}, bound, f"call-{plugin}")
    except PluginError as exc:  # its os._exit, raised instead: named as its failure
        if str(exc).startswith('plugin "'):
            raise
        raise plugin_code_error(plugin, what, exc) from None
    if result is UNFINISHED:
        raise plugin_code_error(plugin, what, _HookTimeout(late))
    return result


def _load_entry_point(ep: EntryPoint, timeout: float, late: str | None = None) -> Any:
    """``ep.load()`` through :func:`call_bounded`, waited for at most ``timeout`` seconds.

    Raises what the import raised (even ``SystemExit``), or :class:`_ImportTimeout`
    (with ``late`` as its message if given).
    """
    plugin = call_bounded(ep.load, {}, timeout, f"import-{ep.name}")
    if plugin is UNFINISHED:
        raise _ImportTimeout(late or f"its import did not finish within {timeout:g} s")
    return plugin


def _allow_list() -> set[str] | None:
    raw = os.environ.get(LOAD_ENV)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def describe_error(exc: BaseException, where: bool = False) -> str:
    """``Type: first line`` of an exception, on one line, storable (surrogates replaced).

    A :class:`PluginError`'s message is kept as it is; pluggy's validation errors
    spread the reason over several lines, so those are joined with ``; ``.
    ``where`` adds `` (file.py:LINE)``, the innermost frame of the traceback: a
    bare ``assert`` in plugin code reads ``AssertionError (plugin.py:12)``.
    """
    if isinstance(exc, PluginError | _ImportTimeout | _HookTimeout):
        return one_line(exc)
    if isinstance(exc, pluggy.PluginValidationError):
        lines = [" ".join(line.split()) for line in str(exc).splitlines()]
        return storable(f"{type(exc).__name__}: {'; '.join(line for line in lines if line)}")
    text = one_line(exc, typed=True)
    frames = traceback.extract_tb(exc.__traceback__) if where else []
    if frames:
        frame = next((f for f in reversed(frames) if not _library_file(f.filename)), frames[-1])
        text += f" ({os.path.basename(frame.filename)}:{frame.lineno})"
    return storable(text)


def _library_file(filename: str) -> bool:
    """True for Python's standard library and ConnectSW's own files: the place an
    error is shown at is the innermost frame of the plugin's code, not of what it
    called (``json.loads`` raising in decoder.py is the plugin's line that called it)."""
    path = os.path.realpath(filename)
    if filename.startswith("<") or path.startswith(_PACKAGE + os.sep):
        return True
    installed = ("site-packages", "dist-packages")
    return path.startswith(_STDLIB + os.sep) and not any(p in path for p in installed)


_STDLIB = os.path.realpath(sysconfig.get_paths()["stdlib"])
_PACKAGE = os.path.realpath(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def plugin_code_error(plugin: str, what: str, exc: BaseException) -> PluginError:
    """The one-line error for an exception raised by a plugin's code at run time.

    ``plugin "p" failed: WHAT raised Type: message (file.py:LINE); entry point p =
    module, dist 1.0; to leave it out, set CONNECTSW_LOAD_PLUGINS=...`` (exit 3,
    :attr:`ExitCode.PLUGIN`). ``what`` says which code: ``workflow "x" decompose``,
    ``command "x"``, ``register_commands``.
    """
    with _lock:
        source = _sources.get(plugin)
    if isinstance(exc, _HookTimeout):  # its message says what did not return
        parts = [f'plugin "{plugin}" failed: {exc}']
    else:
        parts = [f'plugin "{plugin}" failed: {what} raised {describe_error(exc, where=True)}']
    if source is not None and source.origin:
        parts.append(source.origin)
    if source is not None and source.hint:
        parts.append(f"to leave it out, {source.hint}")
    return PluginError("; ".join(parts))


def _unmarked_hooks(plugin: Any, project: str) -> list[str]:
    """Warnings for functions named like a hook that pluggy will ignore in silence."""
    warnings = []
    for name in sorted(HOOK_NAMES):
        fn = inspect.getattr_static(plugin, name, None)
        if isinstance(fn, staticmethod | classmethod):
            fn = fn.__func__
        if not callable(fn) or hasattr(fn, f"{project}_impl") or hasattr(fn, f"{project}_spec"):
            continue
        markers = sorted(
            attr
            for attr in dir(fn)
            if attr.endswith("_impl") and isinstance(getattr(fn, attr, None), dict)
        )
        if markers:
            warnings.append(
                f"function {name} is marked with another project's marker "
                f"({', '.join(markers)}), not @connectsw.hookimpl; it was ignored"
            )
        else:
            warnings.append(
                f"function {name} is not marked with @connectsw.hookimpl; it was ignored"
            )
    return warnings


def trace_done(hook: str, plugin: str, started: float, what: str = "") -> None:
    """Trace ``done in N ms`` (and ``what``) for a step that began at ``started``."""
    elapsed = (time.perf_counter() - started) * 1000
    trace(hook, plugin, f"done in {elapsed:.2f} ms{what}")


def _register(pm: pluggy.PluginManager, plugin: Any, source: PluginSource) -> None:
    """Register one plugin; on failure leave nothing of it registered and record why."""
    started = time.perf_counter()
    try:
        pm.register(plugin, name=source.name)
    except Exception as exc:
        # pluggy adds implementations one by one: undo the ones added before the error.
        if pm.get_plugin(source.name) is not None:
            pm.unregister(name=source.name)
        source.status, source.error = "failed", describe_error(exc)
        trace("register", source.name, f"failed: {source.error}")
        return
    trace_done("register", source.name, started)
    source.warnings.extend(_unmarked_hooks(plugin, pm.project_name))
    if not source.builtin and not pm.get_hookcallers(plugin):
        source.warnings.append(
            f"entry point {source.entry_point} provides no hooks (no function marked "
            "@connectsw.hookimpl); it does nothing"
        )


def _check_pending(pm: pluggy.PluginManager, sources: dict[str, PluginSource]) -> None:
    """pluggy's ``check_pending``, per plugin: an unknown hook fails only its plugin."""
    for hook_name, caller in sorted(vars(pm.hook).items()):
        if not isinstance(caller, pluggy.HookCaller) or caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if impl.optionalhook:
                continue
            source = sources.get(impl.plugin_name)
            if source is None or source.status != "loaded":
                continue
            source.status = "failed"
            source.error = (
                f"implements unknown hook {hook_name} (known: {', '.join(sorted(HOOK_NAMES))})"
            )
            trace("register", source.name, f"failed: {source.error}")
    for source in sources.values():
        if source.status == "failed" and pm.get_plugin(source.name) is not None:
            pm.unregister(name=source.name)


def _entry_point_source(ep: EntryPoint, status: Status = "loaded") -> PluginSource:
    dist = ep.dist
    return PluginSource(
        ep.name,
        builtin=False,
        distribution=dist.name if dist else None,
        version=dist.version if dist else None,
        status=status,
        entry_point=ep.value,
    )


def _normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _load() -> pluggy.PluginManager:
    timeout = import_timeout()
    light = min(timeout, LIGHT_IMPORT_WAIT) if _light.is_set() else None
    listener_timeout()  # a bad value is refused here, not when an event is dispatched
    with plugin_output_to_stderr():
        return _load_all(timeout, light)


def _load_all(timeout: float, light: float | None = None) -> pluggy.PluginManager:
    """Load the built-ins, then each entry point waited for ``timeout`` seconds; with
    ``light``, the entry points together at most that long (see :func:`wait_briefly`)."""
    global _light_deadline
    light_deadline = None if light is None else time.monotonic() + light
    _light_deadline = light_deadline
    pm = pluggy.PluginManager("connectsw")
    pm.add_hookspecs(hookspecs)
    sources: dict[str, PluginSource] = {}
    for modname in DEFAULT_PLUGINS:
        source = sources[modname] = PluginSource(modname, builtin=True)
        started = time.perf_counter()
        try:
            module = importlib.import_module(modname)
        except Exception as exc:
            source.status, source.error = "failed", describe_error(exc)
            trace("import", modname, f"failed: {source.error}")
            continue
        trace_done("import", modname, started)
        _register(pm, module, source)
    allow = _allow_list()
    wanted = {_normalize(name) for name in allow or ()}
    known: set[str] = set()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist else None
        known.update(_normalize(n) for n in (ep.name, dist) if n)
        if ep.name in sources:
            continue  # a second entry point of the same name: the first one wins
        if allow is not None and not {_normalize(ep.name), _normalize(dist or "")} & wanted:
            sources[ep.name] = _entry_point_source(ep, "skipped")
            sources[ep.name].left_out = True
            _skipped_eps[ep.name] = ep
            continue
        source = sources[ep.name] = _entry_point_source(ep)
        started = time.perf_counter()
        wait, late = timeout, None
        if light_deadline is not None:
            left = max(light_deadline - time.monotonic(), LIGHT_MIN_WAIT)
            if left < timeout:
                wait, late = left, LIGHT_CUT_SHORT
        try:
            plugin = _load_entry_point(ep, wait, late)
        except BaseException as exc:  # an import may even sys.exit()
            if isinstance(exc, KeyboardInterrupt):
                raise
            source.status, source.error = "failed", describe_error(exc)
            trace("import", ep.name, f"failed: {source.error}")
            continue
        trace_done("import", ep.name, started)
        _register(pm, plugin, source)
    _check_pending(pm, sources)
    for name, source in sources.items():
        plugin = pm.get_plugin(name)
        if plugin is not None:
            source.hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
    if tracing_enabled():
        _monitor(pm)
    unknown = sorted(n for n in allow or () if _normalize(n) not in known)
    _unknown_allowed[:] = []
    if unknown:
        installed = sorted(s.name for s in sources.values() if not s.builtin)
        _unknown_allowed.append(
            f"{LOAD_ENV} names no installed plugin: {', '.join(unknown)} "
            f"(installed: {', '.join(installed) or 'none'})"
        )
    _sources.clear()
    _sources.update(sources)
    return pm


def check_strict() -> None:
    """In strict mode, raise :class:`PluginError` naming every plugin with a problem."""
    if not strict_enabled():
        return
    problems = [
        f'plugin "{s.name}" {p}' if p.startswith("failed") else f'plugin "{s.name}": {p}'
        for s in sorted(_sources.values(), key=lambda s: s.name)
        for p in s.problems()
    ] + list(_unknown_allowed)
    if problems:
        raise PluginError(
            f"{'; '.join(problems)} ({STRICT_ENV} is set; to leave a plugin out, set "
            f"{LOAD_ENV} to the plugins you want or uninstall it)"
        )


def get_plugin_manager() -> pluggy.PluginManager:
    """The process's plugin manager, loading plugins on first use.

    Raises :class:`PluginError` only in strict mode (``CONNECTSW_STRICT_PLUGINS``)
    when a plugin has a problem; otherwise problems are recorded in
    :func:`plugin_sources`.
    """
    global _pm
    with _lock:
        if _pm is None:
            pm = _load()
            check_strict()
            for warning in [] if _flag(STRICT_ENV) else _unknown_allowed:  # else: the error
                print(f"Warning: {warning}", file=sys.stderr, flush=True)
            _pm = pm
        return _pm


def fail_plugin(name: str, error: str, offered: dict[str, list[str]] | None = None) -> None:
    """Record that plugin ``name`` failed after loading and unregister it.

    Called by the registries when a ``register_*`` hook raised or registered
    something invalid; ``offered`` is what it tried to register.
    """
    pm = get_plugin_manager()
    with _lock:
        source = _sources.get(name)
        if source is None:
            source = _sources[name] = PluginSource(name, builtin=False)
        source.status, source.error = "failed", error
        source.offered = offered or {}
        source.hooks = []
        if pm.get_plugin(name) is not None:
            pm.unregister(name=name)


def add_plugin_commands(cli: click.Group) -> None:
    """Call each plugin's ``register_commands`` on its own, bounded (:func:`hook_bound`).

    Each call gets a copy of ``cli`` with its own command table, so a call that is
    abandoned adds nothing later. A plugin that raises, or does not return in time,
    keeps none of the commands it added; the failure is a warning of that plugin
    (shown by ``connectsw plugins``), and a :class:`PluginError` in strict mode.
    """
    if _pm is None and not entry_points(group=ENTRY_POINT_GROUP):
        # Built-in plugins add no commands: with no third-party plugin installed there
        # is nothing to ask, and `--help` need not import every agent to say so.
        return
    pm = get_plugin_manager()
    from connectsw.plugins.registry import get_registries

    get_registries()  # a plugin that failed to load adds no command (it is unregistered)
    for impl in reversed(pm.hook.register_commands.get_hookimpls()):
        plugin = impl.plugin_name
        before = dict(cli.commands)
        trace("register_commands", plugin, "call")
        started = time.perf_counter()
        scratch = copy.copy(cli)  # the same group, but commands go to its own table
        scratch.commands = dict(before)
        bound, late = hook_bound("register_commands")
        try:
            returned = call_bounded(impl.function, {"cli": scratch}, bound, f"hook-{plugin}")
        except BaseException as exc:  # a hook may even sys.exit()
            if isinstance(exc, KeyboardInterrupt):
                raise
            _command_warning(plugin, f"failed: {describe_error(exc, where=True)}", exc)
            continue
        if returned is UNFINISHED:
            _command_warning(plugin, late.removeprefix("register_commands"), _HookTimeout(late))
            continue
        added = {n: c for n, c in scratch.commands.items() if before.get(n) is not c}
        cli.commands.update(added)
        for name in sorted(added):
            taken = _command_taken(name, before)
            if taken is None:
                continue
            # The name is another's: the built-in (or earlier) command answers it, so the
            # plugin's would never run. It is not added; the plugin gets a warning.
            del added[name]
            if name in before:
                cli.commands[name] = before[name]
            else:
                del cli.commands[name]
            _command_warning(plugin, f': command "{name}" collides with {taken}; not added')
        with _lock:
            source = _sources.setdefault(plugin, PluginSource(plugin, builtin=False))
            source.commands = [(name, _short_help(command)) for name, command in added.items()]
        for name, command in added.items():
            _attribute_failures(command, plugin, name)
            trace("register_commands", plugin, f'registered command "{name}"')
        trace_done("register_commands", plugin, started, f" ({len(added)} registered)")
    check_strict()


def _command_warning(plugin: str, what: str, exc: BaseException | None = None) -> None:
    """Record ``register_commands`` + ``what`` as a warning of ``plugin`` (once) and trace
    it; ``exc`` (the hook raised, or a :class:`_HookTimeout`) is kept to explain a missing
    command later."""
    raised = what.startswith("failed")
    warning = f"register_commands{' ' if raised else ''}{what}"
    trace("register_commands", plugin, what if raised else f"failed: {warning}")
    with _lock:
        source = _sources.setdefault(plugin, PluginSource(plugin, builtin=False))
        if warning not in source.warnings:
            source.warnings.append(warning)
            if exc is not None:
                source.command_error = exc


def _command_taken(name: str, before: Mapping[str, click.Command]) -> str | None:
    """What already answers the CLI command ``name`` (None: nothing): a built-in
    command, another plugin's command, or a workflow's command words."""
    from connectsw.plugins.registry import cli_command_words, get_registries

    if name in cli_command_words():
        return f'the built-in command "{name}"'
    if name in before:
        owner = next(
            (s.name for s in plugin_sources() if name in {c for c, _h in s.commands}), None
        )
        return f'the command of plugin "{owner}"' if owner else f'the command "{name}"'
    workflows = get_registries().workflow_commands()
    for words, workflow in workflows.items():
        if words.split()[0] == name:
            return f'the command "{words}" of workflow "{workflow.name}"'
    return None


def _short_help(command: click.Command) -> str:
    """The first line of a command's help (empty when it has none)."""
    text = (command.short_help or command.help or "").strip()
    return text.splitlines()[0] if text else ""


def _attribute_failures(command: click.Command, plugin: str, name: str) -> None:
    """Make an exception in a plugin command's own code a :class:`PluginError` naming it.

    Click's exceptions, ConnectSW's errors, ``SystemExit`` and Ctrl-C pass unchanged.
    """
    import click

    invoke = command.invoke

    def guarded(ctx: click.Context) -> Any:
        try:
            return invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except ConnectSWError:
            raise
        except Exception as exc:
            raise plugin_code_error(plugin, f'command "{name}"', exc) from exc

    command.invoke = guarded  # type: ignore[method-assign]


def reset_plugin_manager() -> None:
    """Forget loaded plugins so the next use loads them again (for tests)."""
    global _pm, _light_deadline
    with _lock:
        _pm = None
        _light_deadline = None
        _sources.clear()
        _skipped_eps.clear()
        _unknown_allowed.clear()
        _probed.clear()
        _light.clear()
    from connectsw.plugins import registry

    registry.reset_registries()


def is_loaded() -> bool:
    """True once this process has loaded its plugins (cheap; loads nothing)."""
    return _pm is not None


def plugin_sources() -> list[PluginSource]:
    """Every plugin found, loaded or not, built-ins first."""
    get_plugin_manager()
    return sorted(_sources.values(), key=lambda s: (not s.builtin, s.name))


def failed_plugins() -> list[PluginSource]:
    """The plugins that failed to load (after the registries were built)."""
    from connectsw.plugins.registry import get_registries

    get_registries()
    return [s for s in plugin_sources() if s.status == "failed"]


def failed_may_provide(kind: str, name: str, failed: Sequence[PluginSource]) -> list[str]:
    """One clause per failed plugin that may provide ``kind`` ``name``:
    ``plugin "x" failed to load (...); it may provide this agent; to leave it out, ...``.

    A plugin that failed in a ``register_*`` hook is left out of the answer only when
    it registered every item of ``kind`` it had (:attr:`PluginSource.offered`) and
    ``name`` is not among them; one that failed at import may provide anything.
    """
    parts = []
    for source in failed:
        if kind in source.offered and name not in source.offered[kind]:
            continue
        leave_out = f"; to leave it out, {source.hint}" if source.hint else ""
        parts.append(
            f'plugin "{source.name}" failed to load ({source.error}); '
            f"it may provide this {kind}{leave_out}"
        )
    return parts


def broken_plugin_hint(
    kind: str,
    name: str,
    failed: Sequence[PluginSource],
    left_out: Sequence[PluginSource] = (),
) -> str:
    """``; plugin "x" failed to load (...); it may provide this agent; set ...``.

    Names the failed plugins that may provide ``name`` (:func:`failed_may_provide`),
    then the plugins ``CONNECTSW_LOAD_PLUGINS`` left out that provide it (asked
    through :func:`probe_left_out`) with the value that includes them; empty if none.
    ``kind`` is a registry's kind (``agent``, ``gate rule``...) or ``command``.
    """
    parts = failed_may_provide(kind, name, failed)
    for source in left_out:
        if name not in probe_left_out(source.name).get(kind, []):
            continue
        dist = f" ({source.distribution} {source.version})" if source.distribution else ""
        include = ",".join(sorted(included_plugins() | {source.name}))
        parts.append(
            f'plugin "{source.name}"{dist} provides it but {LOAD_ENV} leaves it out; '
            f"to include it, set {LOAD_ENV}={include}"
        )
    return "".join(f"; {p}" for p in parts)


def left_out_plugins() -> list[PluginSource]:
    """The plugins ``CONNECTSW_LOAD_PLUGINS`` left out (not imported by the load)."""
    return [s for s in plugin_sources() if s.left_out]


def probe_left_out(name: str) -> dict[str, list[str]]:
    """What the left-out plugin ``name`` would register, by kind (imported only now).

    For an error message only: the plugin is imported, registered on a scratch
    plugin manager and its ``register_*`` hooks are called with a callback that
    records names; nothing of it is used. Kinds are the registries' (``agent``,
    ``workflow``, ``gate rule``, ``embedder``, ``LLM provider``) and ``command``
    (workflow commands and the CLI commands its ``register_commands`` adds). Each
    call is bounded as when loading (:func:`hook_bound`). A plugin that fails while
    asked gives what it gave so far; one whose hook does not return is asked no more.
    """
    with _lock:
        if name in _probed:
            return _probed[name]
        ep = _skipped_eps.get(name)
    found: dict[str, list[str]] = {}
    if ep is not None:
        try:
            with plugin_output_to_stderr():
                plugin = _load_entry_point(ep, import_timeout())
                scratch = pluggy.PluginManager("connectsw")
                scratch.add_hookspecs(hookspecs)
                scratch.register(plugin, name=name)
                import click

                from connectsw.plugins.registry import HOOKS, KINDS

                scratch_cli = click.Group("connectsw")
                abandoned = threading.Event()  # a late call's registrations are ignored
                calls = [
                    (hook_name, impl, {"register": _recorder(found, KINDS[attr], abandoned)})
                    for hook_name, attr in HOOKS
                    for impl in getattr(scratch.hook, hook_name).get_hookimpls()
                ] + [
                    ("register_commands", impl, {"cli": scratch_cli})
                    for impl in scratch.hook.register_commands.get_hookimpls()
                ]
                for hook_name, impl, kwargs in calls:
                    bound, _late = hook_bound(hook_name)
                    with contextlib.suppress(Exception):
                        returned = call_bounded(impl.function, kwargs, bound, f"probe-{name}")
                        if returned is UNFINISHED:
                            abandoned.set()
                            break
                else:
                    found.setdefault("command", []).extend(scratch_cli.commands)
        except BaseException as exc:  # an import may even sys.exit()
            if isinstance(exc, KeyboardInterrupt):
                raise
    with _lock:
        _probed[name] = found
    return found


def _recorder(
    found: dict[str, list[str]], kind: str, closed: threading.Event
) -> Callable[[Any], None]:
    """A ``register`` callback for :func:`probe_left_out` that records names of ``kind``
    in ``found`` (and a workflow's commands), until ``closed`` is set."""

    def register(item: Any) -> None:
        if closed.is_set():  # an abandoned call, registering late
            return
        found.setdefault(kind, []).append(str(getattr(item, "name", "")))
        for command in getattr(item, "commands", None) or ():
            found.setdefault("command", []).append(" ".join(command.split()))

    return register


def plugin_infos() -> list[dict[str, Any]]:
    """JSON-ready description of each plugin: source, status, problems, what it provides."""
    from connectsw.plugins.registry import HOOKS, get_registries

    regs = get_registries()
    infos = []
    for source in plugin_sources():
        registered: dict[str, list[dict[str, Any]]] = {
            attr: [describe_item(i, attr) for i in getattr(regs, attr).items_of(source.name)]
            for _hook, attr in HOOKS
        }
        registered["commands"] = [{"name": n, "help": h} for n, h in source.commands]
        infos.append(
            {
                "name": source.name,
                "builtin": source.builtin,
                "distribution": source.distribution,
                "version": source.version,
                "entry_point": source.entry_point,
                "status": source.status,
                "error": source.error,
                "warnings": list(source.warnings),
                "hint": source.hint if source.error or source.warnings else "",
                "hooks": source.hooks,
                "agents": regs.agents.names_of(source.name),
                "workflows": regs.workflows.names_of(source.name),
                "gates": regs.gates.names_of(source.name),
                "embedders": regs.embedders.names_of(source.name),
                "llm_providers": regs.llm_providers.names_of(source.name),
                "registered": registered,
            }
        )
    return infos


def _text(value: Any) -> str:
    """A plugin-provided attribute as one line of text (empty when it is not a string)."""
    return " ".join(value.split()) if isinstance(value, str) else ""


def describe_item(item: Any, attr: str) -> dict[str, Any]:
    """``{"name", "description"}`` of a registered item of registry ``attr`` (a
    workflow, ``attr == "workflows"``, adds its ``commands``)."""
    described: dict[str, Any] = {"name": item.name}
    try:
        described["description"] = _text(getattr(item, "description", ""))
    except Exception:  # a plugin's property: listing must not fail on it
        described["description"] = ""
    if attr == "workflows":
        from connectsw.plugins.registry import workflow_commands

        described["commands"] = workflow_commands(item)
    return described
