"""Fixtures for testing ConnectSW plugins: a pytest plugin shipped with the package.

Installed with ConnectSW (entry point ``[project.entry-points.pytest11]
connectsw = "connectsw.testing"``), so a plugin's tests use them with no
conftest. None is autouse and importing this module imports only pytest: a test
that asks for none of them pays nothing.

- ``run_agent(agent, inputs=None, *, files=None, request=...)`` runs one agent on a
  temporary workspace and returns an :class:`AgentRun` (its output, artifacts,
  workspace).
- ``run_graph(graph, *, plugins=(), approve=True)`` runs a task graph (a dict, a
  YAML/JSON file or a :class:`~connectsw.core.models.Plan`) on the real engine,
  embedded store and an in-process Dask cluster, in a temporary data dir, and
  returns a :class:`GraphRun` (status, task results, events, workspace).
- ``check_gate(rule, *, files=None)`` evaluates one gate rule on a workspace the way
  a stage's gate does and returns its :class:`~connectsw.core.models.RuleResult`.
- ``recorded_events`` is an :class:`EventLog` of every event the plugin hooks see
  during the test; ``GraphRun.events`` is the execution's persisted log.

An agent or rule is given as an object or as the name it is registered under
(through the installed plugins' entry points).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from distributed import Client

    from connectsw.agents.base import AgentOutput
    from connectsw.core.models import Artifact, Event, Execution, Plan, RuleResult, TaskResult

__all__ = ["AgentRun", "EventLog", "GraphRun"]

_plugin_ids = itertools.count(1)


# -- results ---------------------------------------------------------------------------


class EventLog:
    """Events in the order they happened, with assertions on their kinds.

    ``kinds`` lists ``Event.kind`` values (``"task.succeeded"``); ``of(kind,
    task_id=None)`` the matching events; ``assert_emitted(kind, task_id=None)``
    returns the first match or fails listing what was seen; ``assert_order(*kinds)``
    checks that the kinds occur in this order (other events may come between).
    """

    def __init__(self, events: Iterable[Event] = ()) -> None:
        self.events: list[Event] = list(events)

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    @property
    def kinds(self) -> list[str]:
        """Every event's kind, in order."""
        return [e.kind for e in self.events]

    def of(self, kind: str, task_id: str | None = None) -> list[Event]:
        """The events of ``kind`` (and of ``task_id``, if given)."""
        return [
            e for e in self.events if e.kind == kind and (task_id is None or e.task_id == task_id)
        ]

    def assert_emitted(self, kind: str, task_id: str | None = None) -> Event:
        """The first event of ``kind`` (for ``task_id``); AssertionError if there is none."""
        found = self.of(kind, task_id)
        what = kind + (f" for task {task_id!r}" if task_id else "")
        assert found, f"no {what} event; seen: {self._seen()}"
        return found[0]

    def assert_order(self, *kinds: str) -> None:
        """``kinds`` occur in this order (not necessarily adjacent); AssertionError if not."""
        seen = iter(self.kinds)
        for kind in kinds:
            assert any(k == kind for k in seen), (
                f"events {list(kinds)} not in this order; seen: {self._seen()}"
            )

    def _seen(self) -> str:
        return (
            ", ".join(e.kind + (f"({e.task_id})" if e.task_id else "") for e in self.events)
            or "none"
        )


@dataclass
class AgentRun:
    """One agent run: its normalised output and the workspace it ran in."""

    output: AgentOutput
    workspace: Path

    @property
    def summary(self) -> str:
        """``AgentOutput.summary``."""
        return self.output.summary

    @property
    def outputs(self) -> dict[str, Any]:
        """``AgentOutput.outputs``: the JSON dependents of the task receive."""
        return self.output.outputs

    @property
    def artifacts(self) -> list[Artifact]:
        """``AgentOutput.artifacts``: what the engine would commit."""
        return self.output.artifacts

    def read(self, relpath: str) -> str:
        """Text of a workspace file (FileNotFoundError if the agent did not write it)."""
        return (self.workspace / relpath).read_text(encoding="utf-8")


@dataclass
class GraphRun:
    """A finished (or paused) execution: its state, task results and events."""

    execution: Execution
    workspace: Path
    results: dict[str, TaskResult] = field(default_factory=dict)
    events: EventLog = field(default_factory=EventLog)

    @property
    def status(self) -> str:
        """``completed``, ``failed``, ``gate_failed``, ``awaiting_checkpoint``, ..."""
        return str(self.execution.status)

    @property
    def error(self) -> str | None:
        """Why the execution failed, or None."""
        return self.execution.error

    def result(self, task_id: str) -> TaskResult:
        """The latest result of ``task_id`` (KeyError naming the tasks that ran)."""
        if task_id not in self.results:
            raise KeyError(f"task {task_id!r} has no result (tasks: {sorted(self.results)})")
        return self.results[task_id]

    def outputs(self, task_id: str) -> dict[str, Any]:
        """The JSON outputs of ``task_id``."""
        return self.result(task_id).outputs

    def read(self, relpath: str) -> str:
        """Text of a workspace file."""
        return (self.workspace / relpath).read_text(encoding="utf-8")


# -- helpers ---------------------------------------------------------------------------


def _write_files(workspace: Path, files: Mapping[str, str] | None) -> Path:
    workspace.mkdir(parents=True, exist_ok=True)
    for relpath, text in (files or {}).items():
        target = workspace / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return workspace


def _registered(kind: str, thing: Any) -> Any:
    """``thing`` itself, or the registered item of ``kind`` called ``thing``."""
    if not isinstance(thing, str):
        return thing
    from connectsw.plugins.registry import get_registries

    registry = getattr(get_registries(), kind)
    found = registry.get(thing)
    if found is None:
        known = ", ".join(sorted(registry.items)) or "none"
        raise LookupError(f"no {registry.kind} {thing!r} is registered (known: {known})")
    return found


#: Environment variables that choose which plugins load: kept (the plugin manager is
#: loaded once per process anyway); every other ``CONNECTSW_*`` setting is not.
PLUGIN_ENV = frozenset(
    {
        "CONNECTSW_LOAD_PLUGINS",
        "CONNECTSW_STRICT_PLUGINS",
        "CONNECTSW_TRACE_PLUGINS",
        "CONNECTSW_PLUGIN_IMPORT_TIMEOUT",
        "CONNECTSW_DEBUG",
    }
)


@pytest.fixture
def _connectsw_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Settings of the test's own: the shipped defaults on a data dir in ``tmp_path``.

    The environment's ``CONNECTSW_*`` settings and a ``connectsw.toml`` in the current
    directory are ignored (an empty config file is used instead), so that a test gives
    the same result on every machine; ``run_graph(settings=...)`` overrides sections.
    """
    from connectsw.conf.settings import get_settings

    for name in list(os.environ):
        if name.startswith("CONNECTSW_") and name not in PLUGIN_ENV:
            monkeypatch.delenv(name)
    data = tmp_path / "connectsw-data"
    config = tmp_path / "connectsw-test.toml"
    config.write_text("", encoding="utf-8")
    monkeypatch.setenv("CONNECTSW_CONFIG", str(config))
    monkeypatch.setenv("CONNECTSW_DATA_DIR", str(data))
    get_settings.cache_clear()
    yield data
    get_settings.cache_clear()


@pytest.fixture
def _connectsw_plugins() -> Iterator[Callable[[Sequence[object]], None]]:
    """``add(plugins)``: register plugin objects (modules) for this test only."""
    from connectsw.plugins.manager import get_plugin_manager
    from connectsw.plugins.registry import reset_registries

    names: list[str] = []

    def add(plugins: Sequence[object]) -> None:
        pm = get_plugin_manager()
        for plugin in plugins:
            name = f"connectsw-testing-{next(_plugin_ids)}"
            pm.register(plugin, name=name)
            names.append(name)
        if plugins:
            reset_registries()

    yield add
    if names:
        pm = get_plugin_manager()
        for name in names:
            pm.unregister(name=name)
        reset_registries()


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def run_agent(tmp_path: Path) -> Callable[..., AgentRun]:
    """``run_agent(agent, inputs=None, *, files=None, request="...", upstream=None,
    feedback=(), attempt=1, workspace=None) -> AgentRun``.

    Validates ``inputs`` (the task's ``with`` block) through the agent's
    ``input_model`` as the planner does (:class:`~connectsw.core.errors.PlanError`
    ``with.key: message`` when invalid), writes ``files`` (path -> text) into the
    workspace (default: a new temporary folder), calls ``agent.run(ctx)`` in this
    process and checks its return value as the engine does. A
    :class:`~connectsw.core.errors.TaskError` from the agent propagates.
    """
    from connectsw.agents.base import TaskContext
    from connectsw.core.errors import PlanError, describe_validation_error
    from connectsw.core.isolation import normalise
    from connectsw.core.models import Request, TaskSpec

    count = itertools.count(1)

    def run(
        agent: Any,
        inputs: Mapping[str, Any] | None = None,
        *,
        files: Mapping[str, str] | None = None,
        request: str = "a test request",
        upstream: Mapping[str, dict[str, Any]] | None = None,
        feedback: Sequence[str] = (),
        attempt: int = 1,
        workspace: Path | None = None,
    ) -> AgentRun:
        from pydantic import ValidationError

        agent = _registered("agents", agent)
        with_ = dict(inputs or {})
        model = getattr(agent, "input_model", None)
        if model is not None:
            try:
                model.model_validate(with_)
            except ValidationError as exc:
                detail = describe_validation_error(exc, prefix="with.")
                raise PlanError(f"task 'task' ({agent.name}): {detail}") from None
        ws = _write_files(workspace or tmp_path / f"workspace-{next(count)}", files)
        ctx = TaskContext(
            execution_id="exec_000000000000",
            task=TaskSpec(id="task", agent=agent.name, title="test task", **{"with": with_}),
            workspace=ws,
            request=Request(command="run", args=[request]),
            attempt=attempt,
            feedback=list(feedback),
            upstream={k: dict(v) for k, v in (upstream or {}).items()},
        )
        return AgentRun(output=normalise(agent.run(ctx)), workspace=ws)

    return run


@pytest.fixture(scope="session")
def connectsw_dask_client() -> Iterator[Client]:
    """An in-process Dask cluster (threads) shared by the test session's ``run_graph`` calls."""
    from distributed import Client, LocalCluster

    from connectsw.core.cluster import quiet_dask_logs

    quiet_dask_logs()
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=4,
            processes=False,
            dashboard_address=None,
            # As the engine's own clusters (core/cluster.py): no web dashboard (it would
            # bind port 8787 and warn when taken), Dask never re-runs a task by itself.
            scheduler_kwargs={
                "dashboard": False,
                "dashboard_address": "127.0.0.1:0",
                "allowed_failures": 0,
            },
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


@pytest.fixture
def run_graph(
    tmp_path: Path,
    _connectsw_data_dir: Path,
    _connectsw_plugins: Callable[[Sequence[object]], None],
    connectsw_dask_client: Client,
) -> Iterator[Callable[..., GraphRun]]:
    """``run_graph(graph, *, plugins=(), workspace=None, files=None, approve=True,
    settings=None) -> GraphRun``.

    ``graph`` is a task graph as a dict (the YAML file's shape, see ``connectsw
    schema``), a path to a YAML/JSON file, or a :class:`~connectsw.core.models.Plan`
    (e.g. from a workflow's ``decompose``). The graph is validated and run by the real
    engine on the embedded store in a temporary data dir; with ``approve`` (default)
    every checkpoint is approved, else the run stops at the first. ``plugins`` are
    plugin objects (modules) registered for this test only, next to the installed
    ones; ``settings`` overrides settings sections (``{"gates": {...}}``).
    Invalid graphs raise :class:`~connectsw.core.errors.PlanError`.
    """
    import yaml

    from connectsw.conf.settings import load_settings
    from connectsw.core.engine import Engine
    from connectsw.core.events import dispatch
    from connectsw.core.models import Decision, Event, Execution, ExecutionStatus, Plan, Request
    from connectsw.core.planner import validate_plan
    from connectsw.core.states import EventKind
    from connectsw.plugins.registry import get_registries

    engines: list[Engine] = []
    count = itertools.count(1)

    def run(
        graph: Mapping[str, Any] | str | os.PathLike[str] | Plan,
        *,
        plugins: Sequence[object] = (),
        workspace: Path | None = None,
        files: Mapping[str, str] | None = None,
        approve: bool = True,
        settings: Mapping[str, Any] | None = None,
    ) -> GraphRun:
        n = next(count)
        _connectsw_plugins(plugins)
        overrides: dict[str, Any] = {"engine": {"retry_backoff": 0.05}}
        overrides.update(settings or {})
        engine = Engine(
            load_settings(**overrides), client=connectsw_dask_client, registries=get_registries()
        )
        engines.append(engine)
        ws = _write_files(workspace or tmp_path / f"workspace-{n}", files)
        if isinstance(graph, Plan):
            plan = validate_plan(graph, engine.registries)
            execution = Execution(
                request=Request(command="run", args=[plan.name]),
                plan=plan,
                workspace=str(ws.resolve()),
            )
            created = Event(
                execution_id=execution.id,
                kind=str(EventKind.EXECUTION_CREATED),
                message=f"plan {plan.name}: {len(plan.tasks)} tasks",
                stage=0,
            )
            dispatch(engine.store.create_execution(execution, [created]))
        else:
            if isinstance(graph, Mapping):
                path = tmp_path / f"graph-{n}.yaml"
                path.write_text(yaml.safe_dump(dict(graph), sort_keys=False), encoding="utf-8")
            else:
                path = Path(graph)
            execution = engine.submit(Request(command="run", args=[str(path.resolve())]), ws)
        final = engine.run(execution.id)
        for _ in range(len(final.plan.stages) * 3):
            if not approve or final.status is not ExecutionStatus.AWAITING_CHECKPOINT:
                break
            engine.decide(final.id, Decision.APPROVE, by="connectsw.testing")
            final = engine.run(final.id)
        results: dict[str, TaskResult] = {}
        for result in engine.store.task_results(final.id):
            known = results.get(result.task_id)
            if known is None or (result.round, result.attempt) >= (known.round, known.attempt):
                results[result.task_id] = result
        return GraphRun(
            execution=final,
            workspace=ws,
            results=results,
            events=EventLog(engine.store.events(final.id, limit=100_000)),
        )

    yield run
    for engine in engines:
        engine.store.close()


@pytest.fixture
def check_gate(tmp_path: Path, _connectsw_data_dir: Path) -> Callable[..., RuleResult]:
    """``check_gate(rule, *, files=None, workspace=None, config=None) -> RuleResult``.

    Runs ``rule`` on the workspace (default: a new temporary folder holding
    ``files``) as a stage's gate does (:func:`connectsw.gates.engine.evaluate_stage`):
    a rule that does not apply passes as "not applicable", an exception in it (or a
    result that is not a RuleResult) is a failed result "rule crashed: Type: message
    (file.py:LINE); ...". Raises PluginError for a rule the registry refuses (an
    unknown ``applies_to`` trait). ``config`` overrides the
    ``[gates]`` settings the rule sees in ``ctx.config``.
    """
    from connectsw.conf.settings import get_settings
    from connectsw.core.models import Execution, Plan, Request, Stage
    from connectsw.gates.base import GateContext
    from connectsw.gates.engine import evaluate_stage
    from connectsw.plugins.registry import Registries, Registry

    count = itertools.count(1)

    def check(
        rule: Any,
        *,
        files: Mapping[str, str] | None = None,
        workspace: Path | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> RuleResult:
        rule = _registered("gates", rule)
        n = next(count)
        ws = _write_files(workspace or tmp_path / f"gate-workspace-{n}", files)
        registries = Registries(
            agents=Registry("agent", ("run",)),
            workflows=Registry("workflow", ("claims", "decompose")),
            gates=Registry("gate rule", ("applies", "evaluate")),
        )
        registries.gates.add(rule, "connectsw.testing")
        stage = Stage(index=0, name="check", task_ids=[], gates=[rule.name])
        execution = Execution(
            request=Request(command="gates check"),
            plan=Plan(name="gate-check", workflow="check", tasks=[], stages=[stage]),
            workspace=str(ws),
        )
        gates_config = {**get_settings().gates.model_dump(), **dict(config or {})}
        gates_config.pop("rule_sets", None)  # only this rule runs
        ctx = GateContext(
            execution=execution,
            stage=stage,
            workspace=ws,
            config=gates_config,
            artifact_dir=tmp_path / f"gate-artifacts-{n}",
        )
        return evaluate_stage(ctx, registries).rules[0]

    return check


@pytest.fixture
def recorded_events(
    _connectsw_plugins: Callable[[Sequence[object]], None],
) -> EventLog:
    """Every event passed to the event hooks in this process during the test, in order."""
    import types

    from connectsw import hookimpl

    log = EventLog()
    recorder = types.ModuleType("connectsw_testing_recorder")

    @hookimpl
    def on_execution_event(event: Event) -> None:
        log.events.append(event)

    @hookimpl
    def on_task_event(event: Event) -> None:
        log.events.append(event)

    @hookimpl
    def on_checkpoint_event(event: Event) -> None:
        log.events.append(event)

    recorder.on_execution_event = on_execution_event  # type: ignore[attr-defined]
    recorder.on_task_event = on_task_event  # type: ignore[attr-defined]
    recorder.on_checkpoint_event = on_checkpoint_event  # type: ignore[attr-defined]
    _connectsw_plugins([recorder])
    return log
