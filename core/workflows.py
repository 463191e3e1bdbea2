"""Built-in workflows: new product, new feature, fix bug and explicit task-graph files.

The new-feature and fix-bug plans name the change for the implementing agent
(``with: {feature: ...}``, ``with: {bug: ...}``); an agent that cannot make it
fails its task, so the execution never reports work that was not done.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connectsw import hookimpl
from connectsw.core.errors import PlanError
from connectsw.core.models import CheckpointSpec, Intent, Plan, TaskSpec
from connectsw.core.planner import CheckpointAt, build_plan, slugify

TESTS_PASS = "tests-pass"


class Workflow:
    """Base class: claims intents of one ``kind`` and decomposes them into a plan."""

    name = ""
    kind = ""
    description = ""
    commands: tuple[str, ...] = ()
    """The command words this workflow answers (``connectsw WORDS "text"``), e.g.
    ``("release",)``; a request with one of them becomes an intent of ``kind``."""

    def claims(self, intent: Intent) -> bool:
        """True if this workflow decomposes ``intent``."""
        return intent.kind == self.kind

    def decompose(self, intent: Intent, **options: Any) -> Plan:
        """The plan for ``intent``."""
        raise NotImplementedError


def _task(id: str, agent: str, title: str, needs: list[str] | None = None, **kw: Any) -> TaskSpec:
    return TaskSpec(id=id, agent=agent, title=title, needs=needs or [], **kw)


def _checkpoint(
    after: list[str], type: str, question: str, gates: tuple[str, ...] = ()
) -> CheckpointAt:
    return CheckpointAt(
        after=after, checkpoint=CheckpointSpec(type=type, question=question), gates=gates
    )


class NewProductWorkflow(Workflow):
    """PM → PRD → checkpoint → architect → checkpoint → backend ∥ frontend → QA → checkpoint."""

    name = "new-product"
    commands = ("new product",)
    kind = "new_product"
    description = "A new product from one sentence: PRD, architecture, service, page, QA."

    def decompose(self, intent: Intent, **options: Any) -> Plan:
        tasks = [
            _task("prd", "product-manager", "Write the PRD", retries=1),
            _task("architecture", "architect", "Design the architecture", ["prd"], retries=1),
            _task(
                "backend", "backend-engineer", "Build the HTTP service", ["architecture"], retries=1
            ),
            _task(
                "frontend", "frontend-engineer", "Build the web page", ["architecture"], retries=1
            ),
            _task(
                "qa",
                "qa-engineer",
                "Run the tests, write the QA report",
                ["backend", "frontend"],
                timeout=600,
            ),
        ]
        checkpoints = [
            _checkpoint(
                ["prd"], "prd_complete", "PRD complete. Approve to proceed with architecture?"
            ),
            _checkpoint(
                ["architecture"],
                "architecture_complete",
                "Architecture and ADR ready. Approve to proceed with implementation?",
            ),
            _checkpoint(
                ["qa"],
                "implementation_complete",
                "Service, page and QA report ready. Approve to complete?",
                gates=(TESTS_PASS,),
            ),
        ]
        return build_plan(slugify(intent.subject), self.name, tasks, checkpoints)


class NewFeatureWorkflow(Workflow):
    """Feature spec → checkpoint → implementation ∥ QA under the tests gate → checkpoint."""

    name = "new-feature"
    commands = ("new feature",)
    kind = "new_feature"
    description = "A feature in an existing product: spec, implementation, QA."

    def decompose(self, intent: Intent, **options: Any) -> Plan:
        slug = slugify(intent.subject)
        spec = {"output": f"docs/features/{slug}.md", "title": intent.subject}
        tasks = [
            _task("spec", "product-manager", "Write the feature spec", with_=spec, retries=1),
            # The built-in backend-engineer has no model: it fails this task, saying so,
            # rather than claiming the feature (see agents/backend_engineer.py).
            _task(
                "implement",
                "backend-engineer",
                "Implement the feature",
                ["spec"],
                with_={"feature": intent.subject},
            ),
            _task("qa", "qa-engineer", "Test the feature", ["implement"], timeout=600),
        ]
        checkpoints = [
            _checkpoint(["spec"], "spec_complete", "Feature spec ready. Approve to implement it?"),
            _checkpoint(
                ["qa"],
                "feature_complete",
                "Feature implemented and tested. Approve?",
                (TESTS_PASS,),
            ),
        ]
        return build_plan(f"feature-{slug}", self.name, tasks, checkpoints)


class FixBugWorkflow(Workflow):
    """Bug report → fix → verification under the tests gate → checkpoint."""

    name = "fix-bug"
    commands = ("fix", "fix bug")
    kind = "fix_bug"
    description = "A bug fix: triage note, fix, verification."

    def decompose(self, intent: Intent, **options: Any) -> Plan:
        slug = slugify(intent.subject)
        note = {"output": f"docs/bugs/{slug}.md", "title": f"Bug: {intent.subject}"}
        tasks = [
            _task("triage", "product-manager", "Describe the bug", with_=note),
            _task(
                "fix", "backend-engineer", "Fix the bug", ["triage"], with_={"bug": intent.subject}
            ),
            _task("verify", "qa-engineer", "Verify the fix", ["fix"], timeout=600),
        ]
        checkpoints = [
            _checkpoint(["verify"], "fix_complete", "Fix verified. Approve?", (TESTS_PASS,))
        ]
        return build_plan(f"fix-{slug}", self.name, tasks, checkpoints)


class TaskGraphWorkflow(Workflow):
    """An explicit task-graph file (YAML or JSON), as written."""

    name = "task-graph"
    commands = ("run",)
    kind = "task_graph"
    description = "Runs a task-graph file as written."

    def decompose(self, intent: Intent, **options: Any) -> Plan:
        if not intent.source_file:
            raise PlanError("no task-graph file given")
        path = Path(intent.source_file)
        if not path.is_absolute() and intent.request.context.working_directory:
            path = Path(intent.request.context.working_directory) / path
        from connectsw.core.taskgraph import load_graph_file  # PyYAML: only for a graph file

        graph = load_graph_file(path)
        tasks = [
            TaskSpec(
                id=t.id,
                agent=t.agent,
                title=t.title,
                with_=t.with_,
                needs=t.needs,
                retries=t.retries,
                timeout=t.timeout,
            )
            for t in graph.tasks
        ]
        checkpoints = [
            CheckpointAt(
                after=cp.after,
                checkpoint=CheckpointSpec(
                    type=cp.name or f"checkpoint_{k + 1}", question=cp.question
                ),
                gates=cp.gates,
            )
            for k, cp in enumerate(graph.checkpoints)
        ]
        try:
            return build_plan(graph.name, self.name, tasks, checkpoints, final_gates=graph.gates)
        except PlanError as exc:
            raise PlanError(f"{path}: {exc}") from None


BUILTIN_WORKFLOWS = (NewProductWorkflow, NewFeatureWorkflow, FixBugWorkflow, TaskGraphWorkflow)


@hookimpl(trylast=True)
def register_workflows(register: Any) -> None:
    """Register the built-in workflows (after any third-party ones)."""
    for cls in BUILTIN_WORKFLOWS:
        register(cls())
