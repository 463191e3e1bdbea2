"""Task-graph files: the README example, YAML and JSON, one-line errors, the schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from connectsw.core.errors import PlanError
from connectsw.core.taskgraph import SCHEMA_FILE, GraphFile, json_schema, load_graph_file

README_EXAMPLE = """\
name: release-notes
tasks:
  - id: collect
    agent: shell
    with: {command: "git log --oneline > CHANGES.txt"}
  - id: write
    agent: product-manager
    needs: [collect]
    retries: 2
    timeout: 300
checkpoints:
  - after: [collect]
    question: "Changes collected. Proceed?"
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def check_readme_graph(graph: GraphFile) -> None:
    assert graph.name == "release-notes"
    assert [t.id for t in graph.tasks] == ["collect", "write"]
    collect, write_task = graph.tasks
    assert collect.agent == "shell"
    assert collect.with_ == {"command": "git log --oneline > CHANGES.txt"}
    assert write_task.needs == ["collect"]
    assert write_task.retries == 2
    assert write_task.timeout == 300
    assert len(graph.checkpoints) == 1
    assert graph.checkpoints[0].after == ["collect"]
    assert graph.checkpoints[0].question == "Changes collected. Proceed?"
    assert graph.gates == []


def test_readme_example_yaml(tmp_path: Path) -> None:
    check_readme_graph(load_graph_file(write(tmp_path, "graph.yaml", README_EXAMPLE)))


def test_readme_example_json(tmp_path: Path) -> None:
    data = yaml.safe_load(README_EXAMPLE)
    path = write(tmp_path, "graph.json", json.dumps(data, indent=2))
    check_readme_graph(load_graph_file(path))


def test_yml_and_unknown_suffix_read_as_yaml(tmp_path: Path) -> None:
    check_readme_graph(load_graph_file(write(tmp_path, "graph.yml", README_EXAMPLE)))
    check_readme_graph(load_graph_file(write(tmp_path, "graph.txt", README_EXAMPLE)))


def one_line_error(path: Path) -> str:
    with pytest.raises(PlanError) as info:
        load_graph_file(path)
    text = str(info.value)
    assert "\n" not in text, text
    assert info.value.__cause__ is None
    assert text.startswith(str(path)), text
    return text


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "g.yaml", "name: x\ntasks:\n  - id: a\n    agent: [shell\n")
    text = one_line_error(path)
    assert "invalid YAML at line " in text
    line = int(text.split("at line ")[1].split(":")[0])
    assert line in (4, 5)  # the unclosed flow sequence (PyYAML reports where it noticed)


def test_bad_yaml_indentation_line(tmp_path: Path) -> None:
    path = write(tmp_path, "g.yaml", "name: x\ntasks:\n  - id: a\n   agent: shell\n")
    text = one_line_error(path)
    assert "invalid YAML at line 4" in text


def test_bad_json_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "g.json", '{\n  "name": "x",\n  "tasks": [,]\n}\n')
    text = one_line_error(path)
    assert "invalid JSON at line 3" in text


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = write(tmp_path, "g.yaml", README_EXAMPLE + "colour: red\n")
    text = one_line_error(path)
    assert "colour: unknown key" in text


def test_unknown_task_key(tmp_path: Path) -> None:
    path = write(
        tmp_path, "g.yaml", "name: x\ntasks:\n  - id: a\n    agent: shell\n    colour: red\n"
    )
    text = one_line_error(path)
    assert "tasks.0.colour: unknown key" in text


def test_bad_type(tmp_path: Path) -> None:
    path = write(
        tmp_path, "g.yaml", 'name: x\ntasks:\n  - id: a\n    agent: noop\n    retries: "two"\n'
    )
    text = one_line_error(path)
    assert "tasks.0.retries: " in text
    assert "integer" in text


def test_out_of_range_values(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "g.yaml",
        "name: x\ntasks:\n  - id: a\n    agent: noop\n    retries: 99\n    timeout: 0\n",
    )
    text = one_line_error(path)
    assert "tasks.0.retries: " in text
    assert "tasks.0.timeout: " in text


def test_bad_task_id(tmp_path: Path) -> None:
    path = write(tmp_path, "g.yaml", "name: x\ntasks:\n  - id: 'has space'\n    agent: noop\n")
    assert "tasks.0.id: " in one_line_error(path)


def test_missing_tasks(tmp_path: Path) -> None:
    text = one_line_error(write(tmp_path, "g.yaml", "name: x\n"))
    assert "tasks: Field required" in text


def test_empty_tasks(tmp_path: Path) -> None:
    text = one_line_error(write(tmp_path, "g.yaml", "name: x\ntasks: []\n"))
    assert "tasks: " in text


def test_missing_name_and_agent(tmp_path: Path) -> None:
    text = one_line_error(write(tmp_path, "g.yaml", "tasks:\n  - id: a\n"))
    assert "name: Field required" in text
    assert "tasks.0.agent: Field required" in text


def test_checkpoint_without_question(tmp_path: Path) -> None:
    text = one_line_error(
        write(
            tmp_path,
            "g.yaml",
            "name: x\ntasks: [{id: a, agent: noop}]\ncheckpoints: [{after: [a]}]\n",
        )
    )
    assert "checkpoints.0.question: Field required" in text


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "", "42\n"])
def test_top_level_not_a_mapping(tmp_path: Path, text: str) -> None:
    message = one_line_error(write(tmp_path, "g.yaml", text))
    assert "expected a mapping with 'name' and 'tasks'" in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    assert one_line_error(path) == f"{path}: no such file"


def test_directory_is_not_readable_file(tmp_path: Path) -> None:
    folder = tmp_path / "dir.yaml"
    folder.mkdir()
    assert "cannot read" in one_line_error(folder)


def test_published_schema_equals_json_schema() -> None:
    published = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert published == json_schema(), (
        "core/taskgraph.schema.json is stale; regenerate it from json_schema()"
    )
    assert SCHEMA_FILE.read_text(encoding="utf-8") == json.dumps(json_schema(), indent=2) + "\n"


def test_schema_describes_the_file() -> None:
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"name", "tasks"}
    task = schema["$defs"]["GraphTask"]
    assert "with" in task["properties"]  # the alias, as written in files
    assert "with_" not in task["properties"]
    assert task["additionalProperties"] is False
