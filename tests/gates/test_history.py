"""test-first on real git histories: tests committed before or with the code they test."""

from __future__ import annotations

from pathlib import Path

from connectsw.gates.history import TestFirstRule, imported_modules
from tests.gates.workspaces import commit, context, write

TEST = "from service.app import make\n\n\ndef test_make():\n    assert make() == 1\n"
CODE = "def make():\n    return 1\n"


def test_tests_committed_first_pass(ws: Path) -> None:
    commit(ws, {"tests/test_app.py": TEST}, "red: a failing test")
    commit(ws, {"service/__init__.py": "", "service/app.py": CODE}, "green")
    result = TestFirstRule().evaluate(context(ws))
    assert result.passed, result.details
    assert "2 commits; 1 test files; 1 of 1 code files" in result.details


def test_tests_committed_with_the_code_pass(ws: Path) -> None:
    commit(ws, {"tests/test_app.py": TEST, "service/__init__.py": "", "service/app.py": CODE})
    assert TestFirstRule().evaluate(context(ws)).passed


def test_code_committed_before_its_test_fails(ws: Path) -> None:
    commit(ws, {"service/__init__.py": "", "service/app.py": CODE}, "code first")
    commit(ws, {"README.md": "# x\n"}, "docs")
    commit(ws, {"tests/test_app.py": TEST}, "tests later")
    result = TestFirstRule().evaluate(context(ws))
    assert not result.passed
    assert "test came after the code: service/app.py" in result.details
    assert result.score == 0.0
    assert "Write the test first" in result.remediation


def test_code_no_test_imports_fails(ws: Path) -> None:
    commit(
        ws,
        {
            "tests/test_app.py": TEST,
            "service/__init__.py": "",
            "service/app.py": CODE,
            "service/extra.py": "X = 1\n",
        },
    )
    result = TestFirstRule().evaluate(context(ws))
    assert not result.passed
    assert "no test imports: service/extra.py" in result.details
    assert result.score == 0.5


def test_uncommitted_code_counts_as_added_last(ws: Path) -> None:
    commit(ws, {"tests/test_app.py": TEST})
    write(ws, {"service/__init__.py": "", "service/app.py": CODE})
    assert TestFirstRule().evaluate(context(ws)).passed
    # ... and an uncommitted test after committed code is late.
    other = ws.parent / "other"
    other.mkdir()
    commit(other, {"service/__init__.py": "", "service/app.py": CODE})
    write(other, {"tests/test_app.py": TEST})
    assert not TestFirstRule().evaluate(context(other)).passed


def test_applies_to_python_in_git_only(ws: Path) -> None:
    write(ws, {"app.py": CODE})
    assert not TestFirstRule().applies(context(ws))  # no repository
    commit(ws, {"README.md": "x"})
    assert TestFirstRule().applies(context(ws))


def test_imports_name_modules_and_their_members(tmp_path: Path) -> None:
    path = tmp_path / "test_x.py"
    path.write_text("import a.b, c\nfrom d import e\nfrom . import rel\n")
    assert imported_modules(path) == {"a.b", "c", "d", "d.e"}
