"""The build rule on real workspaces: Python compiles and builds a wheel, npm builds."""

from __future__ import annotations

import os
import time
from pathlib import Path

from connectsw.gates.build import BuildRule
from tests.gates.workspaces import context, write

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "tiny"
version = "0.1.0"

[tool.setuptools]
packages = ["tiny"]
"""


def test_python_files_that_compile_pass(ws: Path) -> None:
    write(ws, {"app.py": "def f():\n    return 1\n", "pkg/mod.py": "X = 2\n"})
    result = BuildRule().evaluate(context(ws))
    assert result.passed, result.details
    assert "compileall" in result.details
    assert not list(ws.rglob("__pycache__"))  # the workspace is left as it was


def test_a_syntax_error_fails_with_the_file_named(ws: Path) -> None:
    write(ws, {"ok.py": "X = 1\n", "pkg/broken.py": "def f(:\n    pass\n"})
    result = BuildRule().evaluate(context(ws))
    assert not result.passed
    assert "broken.py" in result.details
    assert "exit 1" in result.details
    assert "compileall" in result.remediation


def test_a_python_project_builds_its_wheel(ws: Path) -> None:
    write(ws, {"pyproject.toml": PYPROJECT, "tiny/__init__.py": "VALUE = 1\n"})
    result = BuildRule().evaluate(context(ws))
    assert result.passed, result.details
    assert "tiny-0.1.0-py3-none-any.whl" in result.details
    assert not (ws / "build").exists() and not list(ws.glob("*.egg-info"))


def test_a_python_project_that_does_not_build_fails(ws: Path) -> None:
    # Its version is not a version: the build backend refuses the project.
    write(ws, {"pyproject.toml": PYPROJECT.replace('"0.1.0"', '"not a version"'), "x.py": ""})
    result = BuildRule().evaluate(context(ws))
    assert not result.passed
    assert "pip wheel" in result.details and "version" in result.details.lower()


def test_a_node_project_installs_and_runs_its_build_script(ws: Path) -> None:
    write(
        ws,
        {
            "package.json": '{"name": "page", "version": "1.0.0", "scripts": '
            '{"build": "node build.js"}}',
            "build.js": "require('fs').mkdirSync('dist', {recursive: true});"
            "require('fs').writeFileSync('dist/out.txt', 'built');",
        },
    )
    result = BuildRule().evaluate(context(ws))
    assert result.passed, result.details
    assert "npm run build" in result.details
    assert not (ws / "dist").exists() and not (ws / "node_modules").exists()


def test_a_failing_node_build_fails(ws: Path) -> None:
    write(
        ws,
        {
            "package.json": '{"name": "page", "version": "1.0.0", "scripts": '
            '{"build": "node -e \\"console.error(\'bundle broke\'); process.exit(3)\\""}}',
        },
    )
    result = BuildRule().evaluate(context(ws))
    assert not result.passed
    assert "bundle broke" in result.details
    assert "npm run build" in result.remediation


def test_a_configured_command_and_its_timeout(ws: Path) -> None:
    (ws / "marker").write_text("x")
    ok = BuildRule().evaluate(context(ws, build_command="test -f marker && echo built-ok"))
    assert ok.passed and "built-ok" in ok.details
    missing = BuildRule().evaluate(context(ws, build_command="test -f other-marker"))
    assert not missing.passed and "exit 1" in missing.details
    start = time.monotonic()
    slow = BuildRule().evaluate(context(ws, build_command="sleep 30", build_timeout=0.5))
    assert not slow.passed
    assert "timed out after 0.5s" in slow.details
    assert time.monotonic() - start < 5


def test_applies_to_python_and_node_only(ws: Path) -> None:
    rule = BuildRule()
    write(ws, {"README.md": "# nothing to build\n"})
    assert not rule.applies(context(ws))
    assert rule.applies(context(ws, build_command="true"))
    write(ws, {"package.json": "{}"})
    assert rule.applies(context(ws))


def test_a_fifo_in_the_workspace_is_left_out_of_the_build(ws: Path) -> None:
    # Trial 5 item 3: shutil refused to copy the FIFO and the rule crashed.
    write(ws, {"app.py": "print('hi')\n"})
    os.mkfifo(ws / "pipe")
    os.mkfifo(ws / "sub.py")
    result = BuildRule().evaluate(context(ws))
    assert result.passed, result.details
