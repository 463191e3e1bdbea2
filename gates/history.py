"""The test-first rule: from git history, tests were committed before or with the code they test.

Reference §2.3, test-driven development: "Tests must be written before
implementation". Which code a test tests is read from its imports (``ast``):
``from service.app import make_server`` in ``tests/test_service.py`` makes it a
test of ``service/app.py``. For every Python code file (``__init__.py``,
``conftest.py`` and ``setup.py`` aside) the commit that first added it must not
come before the first commit that added a test importing it; a code file no test
imports breaks the rule too. Files not committed yet count as added last.
"""

from __future__ import annotations

import ast
from pathlib import Path, PurePosixPath

from connectsw.core import supervisor
from connectsw.core.models import RuleResult
from connectsw.core.workspace import SAFE_GIT_CONFIG
from connectsw.gates.base import GateContext, GateRule
from connectsw.gates.detect import is_test_file, walk
from connectsw.gates.process import run_step

GIT_TIMEOUT = 60.0
NOT_CODE = frozenset({"__init__.py", "conftest.py", "setup.py"})
LISTED = 8


def first_added(ctx: GateContext) -> tuple[dict[str, int], int] | str:
    """Each path's first commit that added it (0 = oldest), and the number of commits;
    or why git could not tell."""
    argv = [
        "git",
        *SAFE_GIT_CONFIG,
        "-c",
        "core.quotepath=off",
        "log",
        "--reverse",
        "--topo-order",
        "--no-renames",
        "--diff-filter=A",
        "--name-only",
        "--format=%x1e%H",
    ]
    env = supervisor.agent_env({"GIT_TERMINAL_PROMPT": "0"})
    outcome, why = run_step(ctx, argv, GIT_TIMEOUT, env=env)
    if outcome is None:
        return why
    if outcome.returncode != 0:
        if "does not have any commits" in outcome.output:
            return {}, 0
        return f"git log: exit {outcome.returncode}: {outcome.last_line()}"
    added: dict[str, int] = {}
    index = -1
    for line in outcome.output.split("\n"):  # splitlines() would split at \x1e too
        if line.startswith("\x1e"):
            index += 1
        elif line.strip() and index >= 0:
            added.setdefault(line.strip(), index)
    return added, index + 1


def imported_modules(path: Path) -> set[str]:
    """Dotted names a Python file imports (``from a.b import c`` gives a.b and a.b.c)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, SyntaxError, ValueError):
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def module_files(module: str, code: set[str]) -> set[str]:
    """The code files (workspace-relative) that ``module`` names, at the root or under src/."""
    base = module.replace(".", "/")
    found = set()
    for prefix in ("", "src/"):
        for candidate in (f"{prefix}{base}.py", f"{prefix}{base}/__init__.py"):
            if candidate in code:
                found.add(candidate)
    return found


class TestFirstRule(GateRule):
    """Tests were committed before or with the code they test (git history)."""

    isolation = "thread"  # built-in: its commands run under the supervisor
    __test__ = False  # not a pytest test class
    name = "test-first"
    description = (
        "From git history: every Python code file was first committed with or after a test "
        "that imports it."
    )
    applies_to = ("git",)

    def applies(self, ctx: GateContext) -> bool:
        return super().applies(ctx) and "python" in ctx.traits

    def evaluate(self, ctx: GateContext) -> RuleResult:
        history = first_added(ctx)
        if isinstance(history, str):
            return self.failed(history, "Make the workspace a readable git repository.")
        added, commits = history
        files = [PurePosixPath(p).as_posix() for p in walk(ctx.workspace)]
        py = {f for f in files if f.endswith(".py")}
        tests = {f for f in py if is_test_file(PurePosixPath(f).name)}
        every = py - tests
        code = {f for f in every if PurePosixPath(f).name not in NOT_CODE}
        if not code:
            return self.passed("no Python code files to judge")
        tested_at: dict[str, int] = {}
        for test in sorted(tests):
            when = added.get(test, commits)
            for module in imported_modules(ctx.workspace / test):
                for target in module_files(module, every):
                    tested_at[target] = min(tested_at.get(target, commits + 1), when)
        late: list[str] = []
        untested: list[str] = []
        for f in sorted(code):
            if f not in tested_at:
                untested.append(f)
            elif tested_at[f] > added.get(f, commits):
                late.append(f)
        ok = len(code) - len(late) - len(untested)
        lines = [
            f"{commits} commits; {len(tests)} test files; {ok} of {len(code)} code files "
            "were committed with or after a test that imports them"
        ]
        lines += [f"  test came after the code: {f}" for f in late[:LISTED]]
        lines += [f"  no test imports: {f}" for f in untested[:LISTED]]
        if late or untested:
            return self.failed(
                "\n".join(lines),
                "Write the test first: commit a test that imports each code file listed "
                "before or with it (for code already committed, add its tests now and "
                "commit new code only with its tests).",
                score=round(ok / len(code), 3),
            )
        return self.passed("\n".join(lines))
