"""Task-graph files: the README example, YAML and JSON, one-line errors, the schema."""

from __future__ import annotations

import json
import random
import time
import tracemalloc
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
    assert one_line_error(path) == f"{path}: not found"


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


# -- ambiguous input (issue 5, fault 6) ------------------------------------------

DUPLICATE_NEEDS = """\
name: dup
tasks:
  - id: a
    agent: noop
  - id: b
    agent: noop
    needs: [a]
    needs: []
"""


def test_duplicate_key_in_yaml_is_refused_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "graph.yaml", DUPLICATE_NEEDS)
    assert one_line_error(path) == f"{path}: line 8: duplicate key 'needs'"


def test_a_task_that_needs_the_same_task_twice_is_refused(tmp_path: Path) -> None:
    """Trial 7: ``needs: [a, a]`` was taken silently (kind 6: ambiguous input)."""
    path = write(
        tmp_path,
        "graph.yaml",
        "name: n\ntasks:\n  - {id: a, agent: noop}\n  - {id: b, agent: noop, needs: [a, a]}\n",
    )
    assert "tasks.1.needs: names 'a' twice" in one_line_error(path)


@pytest.mark.parametrize("tagged", ['!!null "3"', '!!int "0x3"', "!!str 5", "!custom 1"])
def test_an_explicit_yaml_tag_is_refused_with_its_line(tmp_path: Path, tagged: str) -> None:
    """Trial 7, M3: ``retries: !!null "3"`` became null, ``!!int "0x3"`` 3, silently."""
    path = write(
        tmp_path,
        "graph.yaml",
        f"name: n\ntasks:\n  - id: a\n    agent: noop\n    retries: {tagged}\n",
    )
    error = one_line_error(path)
    assert error.startswith(f"{path}: line 5: explicit YAML tags are not read (!"), error


def test_second_tasks_key_in_yaml_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "g.yaml", README_EXAMPLE + "tasks:\n  - {id: z, agent: noop}\n")
    assert one_line_error(path) == f"{path}: line 14: duplicate key 'tasks'"


def test_duplicate_key_in_json_is_refused_with_its_line(tmp_path: Path) -> None:
    text = (
        '{\n  "name": "dup",\n  "tasks": [\n    {"id": "a", "agent": "noop"},\n'
        '    {"id": "b", "agent": "noop",\n     "needs": ["a"],\n     "needs": []}\n  ]\n}\n'
    )
    path = write(tmp_path, "graph.json", text)
    assert one_line_error(path) == f"{path}: line 7: duplicate key 'needs'"


def test_same_key_in_different_json_objects_is_fine(tmp_path: Path) -> None:
    text = json.dumps(
        {
            "name": "ok",
            "tasks": [
                {"id": "a", "agent": "noop", "with": {"id": 1, "x": {"id": 2}}},
                {"id": "b", "agent": "noop", "needs": ["a"]},
            ],
        }
    )
    graph = load_graph_file(write(tmp_path, "g.json", text))
    assert graph.tasks[0].with_ == {"id": 1, "x": {"id": 2}}


def test_merge_key_may_be_overridden(tmp_path: Path) -> None:
    text = (
        "name: merge\n"
        "defaults: &d {retries: 1, timeout: 5}\n"
        "tasks:\n  - {id: a, agent: noop, <<: *d, timeout: 9}\n"
    )
    # 'defaults' is not a graph key: the merge itself must be accepted first.
    assert "defaults: unknown key" in one_line_error(write(tmp_path, "g.yaml", text))
    text = "name: merge\ntasks:\n  - id: a\n    agent: noop\n    with: {<<: {x: 1, y: 2}, y: 3}\n"
    assert load_graph_file(write(tmp_path, "g2.yaml", text)).tasks[0].with_ == {"x": 1, "y": 3}


def test_a_second_merge_key_is_a_duplicate_key(tmp_path: Path) -> None:
    """Trial 5 item 12: two `<<:` in one mapping were both applied in silence (the key
    is given twice; YAML's way to merge several is one `<<: [*a, *b]`)."""
    text = (
        "name: merge\ndefaults:\n  a: &a {x: 1}\n  b: &b {y: 2}\ntasks:\n  - id: a\n"
        "    agent: noop\n    with:\n      <<: *a\n      <<: *b\n"
    )
    path = write(tmp_path, "g.yaml", text)
    assert one_line_error(path) == f"{path}: line 10: duplicate key '<<'"
    text = "name: merge\ntasks:\n  - id: a\n    agent: noop\n    with: {<<: [{x: 1}, {y: 2}]}\n"
    assert load_graph_file(write(tmp_path, "g2.yaml", text)).tasks[0].with_ == {"x": 1, "y": 2}


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3.0", "valid integer"), ("5_0", "valid integer"), ("1e1", "valid integer")],
)
def test_retries_are_integers_only(tmp_path: Path, value: str, expected: str) -> None:
    text = f"name: r\ntasks:\n  - id: a\n    agent: noop\n    retries: {value}\n"
    path = write(tmp_path, "g.yaml", text)
    assert one_line_error(path) == f"{path}: line 5: tasks.0.retries: Input should be a {expected}"


def test_yaml_values_keep_their_yaml_1_2_core_types(tmp_path: Path) -> None:
    text = (
        "name: types\ntasks:\n  - id: a\n    agent: noop\n    with:\n"
        "      answers: [yes, no, on, off, y, n, Yes, NO]\n"
        "      bools: [true, false, True, FALSE]\n"
        "      time: 12:30\n      sexagesimal: 190:20:30.15\n"
        "      date: 2024-01-01\n      stamp: 2001-12-14t21:59:43.10-05:00\n"
        "      version: 1.10\n      leading_zero: 010\n      octal: 0o10\n      hex: 0x1F\n"
        "      exp: 1e3\n      underscored: 1_000\n      nothing: null\n      tilde: ~\n"
        "      equals: =\n      country: NO\n"
    )
    w = load_graph_file(write(tmp_path, "g.yaml", text)).tasks[0].with_
    assert w["answers"] == ["yes", "no", "on", "off", "y", "n", "Yes", "NO"]
    assert w["bools"] == [True, False, True, False]
    assert w["time"] == "12:30"
    assert w["sexagesimal"] == "190:20:30.15"
    assert w["date"] == "2024-01-01"
    assert w["stamp"] == "2001-12-14t21:59:43.10-05:00"
    assert w["version"] == 1.1 and isinstance(w["version"], float)
    assert w["leading_zero"] == 10
    assert w["octal"] == 8
    assert w["hex"] == 31
    assert w["exp"] == 1000.0
    assert w["underscored"] == "1_000"
    assert w["nothing"] is None and w["tilde"] is None
    assert w["equals"] == "="
    assert w["country"] == "NO"


@pytest.mark.parametrize("tag", ["!!binary aGVsbG8=", "!!timestamp 2024-01-01", "!!set {a}"])
def test_non_json_tags_are_refused(tmp_path: Path, tag: str) -> None:
    text = f"name: t\ntasks:\n  - id: a\n    agent: noop\n    with: {{v: {tag}}}\n"
    text_error = one_line_error(write(tmp_path, "g.yaml", text))
    assert "line 5: explicit YAML tags are not read (!!" in text_error


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("g.yaml", "with: {x: 1, 2: y}\n", "key 2 is not a string"),
        ("g.yaml", "with: {x: .nan}\n", "line 5: .nan is not allowed"),
        ("g.yaml", "with: {x: -.inf}\n", "line 5: -.inf is not allowed"),
        ("g.yaml", "with: {x: 1e999}\n", "1e999 is not allowed"),
        ("g.yaml", "with: {x: " + "9" * 5000 + "}\n", "line 5: number too long"),
        ("g.yaml", 'with: {x: "\\ud800"}\n', "not valid Unicode"),
        ("g.yaml", "with: {x: a\x01}\n", "unacceptable character #x0001"),
    ],
)
def test_values_must_be_json_values(tmp_path: Path, name: str, content: str, expected: str) -> None:
    text = "name: v\ntasks:\n  - id: a\n    agent: noop\n    " + content
    assert expected in one_line_error(write(tmp_path, name, text))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("NaN", "NaN is not allowed"),
        ("-Infinity", "-Infinity is not allowed"),
        ("1e999", "1e999 is not allowed"),
        ("9" * 5000, "number too long"),
        ('"\\ud800"', "not valid Unicode"),
    ],
)
def test_json_values_must_be_finite_and_valid(tmp_path: Path, value: str, expected: str) -> None:
    text = '{"name": "v", "tasks": [{"id": "a", "agent": "noop", "with": {"x": VALUE}}]}'
    text = text.replace("VALUE", value)
    assert expected in one_line_error(write(tmp_path, "g.json", text))


# -- durations: every timeout has a range ------------------------------------------


@pytest.mark.parametrize("name", ["g.yaml", "g.json"])
def test_huge_timeout_means_seven_days(tmp_path: Path, name: str) -> None:
    data = {"name": "t", "tasks": [{"id": "a", "agent": "noop", "timeout": 1e10}]}
    graph = load_graph_file(write(tmp_path, name, json.dumps(data)))
    assert graph.tasks[0].timeout == 604800.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (".nan", ".nan is not allowed"),
        (".inf", ".inf is not allowed"),
        ('"nan"', "line 5: tasks.0.timeout: Input should be a valid number"),
        ('"inf"', "line 5: tasks.0.timeout: Input should be a valid number"),
        ("true", "tasks.0.timeout: expected a number, not true/false"),
        ("-1", "tasks.0.timeout: Input should be greater than 0"),
    ],
)
def test_bad_timeouts_are_refused(tmp_path: Path, value: str, expected: str) -> None:
    text = f"name: t\ntasks:\n  - id: a\n    agent: noop\n    timeout: {value}\n"
    assert expected in one_line_error(write(tmp_path, "g.yaml", text))


def test_retries_true_is_not_one(tmp_path: Path) -> None:
    text = "name: t\ntasks:\n  - id: a\n    agent: noop\n    retries: true\n"
    assert "tasks.0.retries: expected a number" in one_line_error(write(tmp_path, "g.yaml", text))


# -- encodings (issue 5, fault 10) ------------------------------------------------


@pytest.mark.parametrize("codec", ["utf-16", "utf-8-sig", "utf-32", "utf-16-be"])
def test_files_with_a_byte_order_mark_are_read(tmp_path: Path, codec: str) -> None:
    data = README_EXAMPLE.encode(codec)
    if codec == "utf-16-be":
        data = b"\xfe\xff" + data
    path = tmp_path / "graph.yaml"
    path.write_bytes(data)
    check_readme_graph(load_graph_file(path))


def test_utf16_json_with_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "graph.json"
    path.write_bytes(json.dumps(yaml.safe_load(README_EXAMPLE)).encode("utf-16"))
    check_readme_graph(load_graph_file(path))


def test_utf16_without_bom_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "graph.yaml"
    path.write_bytes(README_EXAMPLE.encode("utf-16-le"))
    assert "contains NUL bytes (UTF-16 or UTF-32 without a byte-order mark?)" in one_line_error(
        path
    )


@pytest.mark.parametrize("name", ["graph.yaml", "graph.json"])
def test_invalid_utf8_names_the_byte_and_offset(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"name: caf\xe9\ntasks: []\n")
    assert one_line_error(path) == f"{path}: not valid UTF-8 (byte 0xe9 at line 1, offset 9)"


def test_truncated_utf16_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "graph.yaml"
    path.write_bytes("name: x\n".encode("utf-16") + b"\x00")
    assert "not valid UTF-16" in one_line_error(path)


# -- bounds: size, depth, alias expansion (issue 5, fault 10) -----------------------
# "Fast" is measured in this thread's CPU time, which a busy machine (other tests running
# beside this one) does not stretch as it stretches wall time.


def test_file_over_one_mib_is_refused_before_parsing(tmp_path: Path) -> None:
    path = write(tmp_path, "g.yaml", "name: x\n#" + "x" * (1 << 20) + "\n")
    started = time.thread_time()
    assert "larger than 1048576 bytes" in one_line_error(path)
    assert time.thread_time() - started < 1


@pytest.mark.parametrize("name", ["g.yaml", "g.json"])
def test_very_deep_nesting_is_refused_without_recursion_error(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, "[" * 100_000)
    started = time.thread_time()
    assert "line 1: nested deeper than 32 levels" in one_line_error(path)
    assert time.thread_time() - started < 1


@pytest.mark.parametrize("name", ["g.yaml", "g.json"])
def test_nesting_within_bound_is_read(tmp_path: Path, name: str) -> None:
    # top mapping, tasks list, task mapping, with mapping: 4 levels, then 28 lists
    inner: object = "leaf"
    for _ in range(28):
        inner = [inner]
    data = {"name": "d", "tasks": [{"id": "a", "agent": "noop", "with": {"x": inner}}]}
    assert load_graph_file(write(tmp_path, name, json.dumps(data))).tasks[0].with_["x"] == inner
    data["tasks"][0]["with"] = {"x": [inner]}  # type: ignore[index]
    assert "nested deeper than 32 levels" in one_line_error(write(tmp_path, name, json.dumps(data)))


def test_block_style_nesting_is_bounded(tmp_path: Path) -> None:
    text = "".join("  " * i + f"k{i}:\n" for i in range(40)) + "  " * 40 + "v\n"
    assert "line 33: nested deeper than 32 levels" in one_line_error(
        write(tmp_path, "g.yaml", text)
    )


ALIAS_BOMB = """\
name: bomb
tasks:
  - id: a
    agent: noop
    with:
      a: &a [x,x,x,x,x,x,x,x,x]
      b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
      c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
      d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
      e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
      f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
      g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
      h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
      i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_yaml_alias_bomb_is_refused_fast_and_small(tmp_path: Path) -> None:
    path = write(tmp_path, "g.yaml", ALIAS_BOMB)
    assert path.stat().st_size < 520
    tracemalloc.start()
    started = time.thread_time()
    try:
        text = one_line_error(path)
        elapsed = time.thread_time() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "aliases expand to more than 10000 values" in text
    assert elapsed < 1
    assert peak < 20 * 1024 * 1024


def test_merge_key_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["name: bomb", "x0: &x0 {a: 1, b: 2, c: 3, d: 4}"]
    for i in range(1, 12):
        lines.append(f"x{i}: &x{i} {{<<: [{', '.join([f'*x{i - 1}'] * 8)}]}}")
    path = write(tmp_path, "g.yaml", "\n".join(lines) + "\n")
    started = time.thread_time()
    assert "aliases expand to more than 10000 values" in one_line_error(path)
    assert time.thread_time() - started < 1


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    text = "name: r\ntasks:\n  - id: a\n    agent: noop\n    with: &w {self: *w}\n"
    assert "line 5: alias *w refers to a value that contains it" in one_line_error(
        write(tmp_path, "g.yaml", text)
    )


def test_alias_nesting_counts_towards_depth(tmp_path: Path) -> None:
    deep = "[" * 30 + "]" * 30
    text = f"deep: &d {deep}\nname: x\ntasks:\n  - {{id: a, agent: noop, with: {{x: *d}}}}\n"
    assert "line 4: nested deeper than 32 levels" in one_line_error(write(tmp_path, "g.yaml", text))


def test_modest_aliases_are_fine(tmp_path: Path) -> None:
    text = (
        "name: shared\ntasks:\n"
        "  - {id: a, agent: noop, with: &common {env: {A: '1', B: '2'}, args: [x, y]}}\n"
        "  - {id: b, agent: noop, with: *common}\n"
    )
    graph = load_graph_file(write(tmp_path, "g.yaml", text))
    assert graph.tasks[1].with_ == {"env": {"A": "1", "B": "2"}, "args": ["x", "y"]}


def test_no_file_content_escapes_as_another_exception(tmp_path: Path) -> None:
    """Random bytes and random edits of a valid file: a GraphFile or a PlanError."""
    rng = random.Random(5)
    seeds = [README_EXAMPLE.encode(), json.dumps(yaml.safe_load(README_EXAMPLE)).encode()]
    for i in range(300):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            pos = rng.randrange(len(data))
            data[pos : pos + rng.randint(0, 3)] = bytes(
                rng.choice(b'{}[]:,"&*!<>-\n \\\x00\xff%@|') for _ in range(rng.randint(0, 3))
            )
        path = tmp_path / ("f.json" if i % 2 else "f.yaml")
        path.write_bytes(bytes(data))
        try:
            load_graph_file(path)
        except PlanError as exc:
            assert "\n" not in str(exc)


def test_a_nul_character_is_refused_with_its_place(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text('name: x\ntasks:\n  - id: a\n    agent: noop\n    title: "t\\0x"\n')
    with pytest.raises(PlanError, match=r"tasks\.0\.title: contains a NUL character"):
        load_graph_file(path)


def test_a_graph_path_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    """Trial 5, item 9: the path is stored with the request (records are JSON)."""
    import os

    path = tmp_path / os.fsdecode(b"caf\xe9.yaml")
    path.write_text("name: x\ntasks:\n  - id: a\n    agent: noop\n")
    with pytest.raises(PlanError, match=r"caf\\xe9\.yaml: the file's path is not valid UTF-8$"):
        load_graph_file(path)


@pytest.mark.parametrize(
    ("directive", "said"),
    [
        ("%YAML 1.1", "%YAML 1.1 is not supported"),
        ("%YAML 1.0", "%YAML 1.0 is not supported"),
        ("%YAML 1.3", "%YAML 1.3 is not supported"),
        ("%FOO bar", "unknown directive %FOO"),
    ],
)
def test_a_yaml_directive_the_loader_does_not_implement_is_refused_with_its_line(
    tmp_path: Path, directive: str, said: str
) -> None:
    """Issue 5, kind 6: a file that declares YAML 1.1 (where ``010`` is 8) is refused,
    not read with 1.2's types; so is an unknown directive."""
    text = (
        f"# a graph\n{directive}\n---\nname: v\ntasks:\n  - {{id: a, agent: noop, retries: 010}}\n"
    )
    path = write(tmp_path, "g.yaml", text)
    error = one_line_error(path)
    assert error.startswith(f"{path}: line 2: {said}"), error


def test_a_yaml_1_2_directive_and_tag_directives_are_kept(tmp_path: Path) -> None:
    text = (
        "%YAML 1.2\n%TAG !e! tag:example.com,2000:\n---\n"
        "name: v\ntasks:\n  - {id: a, agent: noop, retries: 010}\n"
    )
    assert load_graph_file(write(tmp_path, "g.yaml", text)).tasks[0].retries == 10
