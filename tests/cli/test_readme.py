"""The README's task-graph example runs as written: the docs cannot drift from the product."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import connectsw

README = Path(connectsw.__file__).parent / "README.md"


def readme_graph() -> str:
    """The first YAML block of the README's "Task-graph files" section."""
    section = README.read_text(encoding="utf-8").split("## Task-graph files", 1)[1]
    match = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert match, "the README's task-graph section has no yaml example"
    return match.group(1)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def test_readme_graph_example_runs_in_a_repository(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "app.py").write_text("print('hi')\n")
    git(repo, "add", "app.py")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first feature")
    (repo / "graph.yaml").write_text(readme_graph())

    result = cli("run", repo / "graph.yaml", "--yes", "--workspace", repo, "--json", ok=True)
    assert result.json()["status"] == "completed"
    assert "first feature" in (repo / "CHANGES.txt").read_text()
    notes = (repo / "docs" / "RELEASE-NOTES.md").read_text()
    assert notes.startswith("# Release notes")
    subjects = git(repo, "log", "--format=%s").splitlines()
    assert subjects[:2] == ["write: product-manager task", "collect: shell task"]
    # Only the declared artifacts were committed: the graph file itself stays untracked.
    assert "graph.yaml" in git(repo, "status", "--porcelain")
