"""The task-graph file: an explicit plan written by a person (YAML or JSON).

A file is read strictly, and every input is bounded before it is parsed or
validated (the rules are in the README, "Task-graph files"):

- at most :data:`MAX_FILE_BYTES`; text as :mod:`connectsw.core.textfiles` reads it
  (UTF-8, or what a byte-order mark says; undecodable bytes named by position);
- nesting at most :data:`MAX_DEPTH` mappings/lists deep (checked without recursion,
  so ``[[[[...`` cannot raise ``RecursionError``);
- YAML aliases expand to at most :data:`MAX_ALIAS_VALUES` values in all (an alias
  bomb is refused while composing, before anything is copied);
- a key given twice in one mapping is refused with its line, in YAML and JSON (the
  merge key ``<<`` too: several mappings merge as ``<<: [*a, *b]``);
- YAML scalars are typed as the YAML 1.2 core schema says: only ``true``/``false``
  are booleans (``yes``, ``no``, ``on``, ``off`` stay strings), no sexagesimal
  numbers (``12:30`` stays a string), no implicit timestamps (``2024-01-01`` stays
  a string), ``010`` is ten, ``0o10`` is eight;
- the values are JSON values: string keys, finite numbers, valid Unicode; explicit
  tags other than the core ones (``!!binary``, ``!!timestamp``, ``!!set``...) are
  refused;
- fields are validated strictly: a quoted number (``timeout: "5"``) is not a number
  and a number is not a string; errors name the field's path and its line.

The duplicate-key check, the depth and alias bounds are written here on top of
PyYAML's loader hooks and a small JSON tokenizer: neither PyYAML nor the standard
``json`` module offers them.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from yaml.events import AliasEvent, MappingStartEvent, SequenceStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from connectsw.core import textfiles
from connectsw.core.durations import NotBool, Timeout
from connectsw.core.errors import PlanError, describe_validation_error, is_utf8, shown

ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
SCHEMA_FILE = Path(__file__).with_name("taskgraph.schema.json")

MAX_FILE_BYTES = 1_048_576
"""A task-graph file is at most 1 MiB."""
MAX_DEPTH = 32
"""Mappings and lists nest at most 32 levels deep (the top mapping is level 1)."""
MAX_ALIAS_VALUES = 10_000
"""YAML aliases (``*name``) may add at most this many values in all, once expanded."""
MAX_NUMBER_CHARS = 100
"""A number is written with at most 100 characters."""


class GraphTask(BaseModel):
    """One task: the agent that runs it, its input (``with``) and what it needs."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)

    id: str = Field(pattern=ID_PATTERN, description="Unique task id.")
    agent: str = Field(description="Agent type, e.g. shell, product-manager.")
    title: str = Field("", description="Human-readable title.")
    with_: dict[str, Any] = Field(
        default_factory=dict, alias="with", description="Input given to the agent."
    )
    needs: list[str] = Field(default_factory=list, description="Ids of tasks that run first.")
    retries: Annotated[int, NotBool] | None = Field(
        None,
        ge=0,
        le=20,
        description="Extra attempts after a failure (0 to 20); default: engine.default_retries.",
    )
    timeout: Timeout | None = Field(
        None,
        description=(
            "Seconds per attempt: a finite number above 0; values above 604800 (7 days)"
            " mean 7 days. Empty: the engine's default."
        ),
    )

    @field_validator("needs")
    @classmethod
    def _needs_once(cls, needs: list[str]) -> list[str]:
        for i, need in enumerate(needs):
            if need in needs[:i]:
                raise ValueError(f"names {need!r} twice")
        return needs


class GraphCheckpoint(BaseModel):
    """A human checkpoint once the listed tasks (and all they need) have finished."""

    model_config = ConfigDict(extra="forbid", strict=True)

    after: list[str] = Field(min_length=1, description="Task ids this checkpoint waits for.")
    question: str = Field(min_length=1, description="What the person is asked.")
    name: str | None = Field(None, pattern=ID_PATTERN, description="Checkpoint type name.")
    gates: list[str] = Field(
        default_factory=list, description="Gate rules that must pass before asking."
    )


class GraphFile(BaseModel):
    """A task-graph file (``connectsw run FILE``)."""

    model_config = ConfigDict(extra="forbid", title="ConnectSW task graph", strict=True)

    name: str = Field(min_length=1, description="Name of the plan.")
    description: str = ""
    tasks: list[GraphTask] = Field(min_length=1)
    checkpoints: list[GraphCheckpoint] = Field(default_factory=list)
    gates: list[str] = Field(
        default_factory=list, description="Gate rules for the last stage (after all tasks)."
    )


def json_schema() -> dict[str, Any]:
    """The published JSON Schema of the task-graph file."""
    schema = GraphFile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


# -- reading ------------------------------------------------------------------


class _InputError(Exception):
    """A bound or rule broken while reading; ``line`` is 1-based, or None."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def _line_at(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


# -- YAML: core-schema types, duplicate keys, depth and alias bounds -----------

_CORE_RESOLVERS: tuple[tuple[str, str, str], ...] = (
    # YAML 1.2 core schema, https://yaml.org/spec/1.2.2/#1032-tag-resolution
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", "~nN"),
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$",
        "-+0123456789.",
    ),
    # Merge keys (<<) are YAML 1.1, kept: they are common in CI files and harmless.
    ("tag:yaml.org,2002:merge", r"^(?:<<)$", "<"),
)


class _GraphLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 core typing and the bounds of this module."""

    yaml_implicit_resolvers: dict[str, list[tuple[str, re.Pattern[str]]]] = {}

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._level = 0
        self._alias_values = 0
        self._shape: dict[int, tuple[int, int]] = {}  # id(node) -> (values, height)
        self._checked: set[int] = set()

    # scanning: only the directives this loader implements
    def scan_directive(self) -> Any:
        """``%YAML 1.2`` and ``%TAG`` are kept; any other directive is refused with its
        line. PyYAML reads a ``%YAML 1.1`` file with this loader's 1.2 core types, so
        ``010`` would silently be 10, not 1.1's 8 (issue 5, kind 6); an unknown
        directive is a typo or a dialect this loader does not know."""
        token = super().scan_directive()
        line = _line_of(token.start_mark)
        if token.name == "YAML":
            major, minor = token.value
            if (major, minor) != (1, 2):
                raise _InputError(
                    f"%YAML {major}.{minor} is not supported: graph files are YAML 1.2"
                    " (remove the directive or write %YAML 1.2)",
                    line,
                )
        elif token.name != "TAG":
            raise _InputError(
                f"unknown directive %{token.name}: only %YAML 1.2 and %TAG are read", line
            )
        return token

    # composing: bounds on depth and alias expansion, before anything is built
    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            alias = super().compose_node(parent, index)
            assert alias is not None  # PyYAML raises on an undefined alias
            node: Node = alias
            line = _line_of(event.start_mark)
            shape = self._shape.get(id(node))
            if shape is None:
                raise _InputError(f"alias *{event.anchor} refers to a value that contains it", line)
            values, height = shape
            self._alias_values += values
            if self._alias_values > MAX_ALIAS_VALUES:
                raise _InputError(f"aliases expand to more than {MAX_ALIAS_VALUES} values", line)
            if self._level + height > MAX_DEPTH:
                raise _InputError(f"nested deeper than {MAX_DEPTH} levels", line)
            return node
        tag = getattr(event, "tag", None)
        if tag not in (None, "!"):
            # An explicit tag changes a value without a word: !!null "3" is null,
            # !!int "0x3" is 3 (trial 7, M3). A graph's values are plain JSON values.
            shown = tag.replace("tag:yaml.org,2002:", "!!")
            raise _InputError(
                f"explicit YAML tags are not read ({shown}): write the value itself",
                _line_of(event.start_mark),
            )
        collection = isinstance(event, (MappingStartEvent, SequenceStartEvent))
        if collection:
            self._level += 1
            if self._level > MAX_DEPTH:
                raise _InputError(
                    f"nested deeper than {MAX_DEPTH} levels", _line_of(event.start_mark)
                )
        try:
            composed = super().compose_node(parent, index)
        finally:
            if collection:
                self._level -= 1
        assert composed is not None  # a scalar, sequence or mapping start was peeked
        node = composed
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            self._shape[id(node)] = (1, 0)
            return node
        values, height = 1, 0
        for child in children:
            child_values, child_height = self._shape[id(child)]
            values += child_values
            height = max(height, child_height)
        self._shape[id(node)] = (values, height + 1)
        return node

    # constructing: duplicate keys, JSON-compatible scalars
    def flatten_mapping(self, node: MappingNode) -> None:
        if id(node) not in self._checked:  # before merge keys add their pairs to it
            self._checked.add(id(node))
            self._refuse_duplicates(node)
        super().flatten_mapping(node)

    def _refuse_duplicates(self, node: MappingNode) -> None:
        seen: set[Any] = set()
        merged = False
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # a key too: once per mapping
                if merged:
                    raise _InputError("duplicate key '<<'", key_node.start_mark.line + 1)
                merged = True
                continue
            if not isinstance(key_node, ScalarNode):
                continue
            key = self.construct_object(key_node)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue
            if duplicate:
                raise _InputError(f"duplicate key {_show(key)}", key_node.start_mark.line + 1)

    def construct_yaml_int(self, node: ScalarNode) -> int:
        text = self.construct_scalar(node)
        if len(text) > MAX_NUMBER_CHARS:
            raise _InputError("number too long", node.start_mark.line + 1)
        digits = text.lstrip("+")
        if digits.startswith("0o"):
            return int(digits[2:], 8)
        if digits.startswith("0x"):
            return int(digits[2:], 16)
        return int(digits, 10)

    def construct_yaml_float(self, node: ScalarNode) -> float:
        text = self.construct_scalar(node)
        if len(text) > MAX_NUMBER_CHARS:
            raise _InputError("number too long", node.start_mark.line + 1)
        value = math.inf if text.lower().lstrip("+-") in (".inf", ".nan") else float(text)
        if not math.isfinite(value):
            raise _InputError(
                f"{text} is not allowed: numbers must be finite (JSON values)",
                node.start_mark.line + 1,
            )
        return value

    def construct_yaml_bool(self, node: ScalarNode) -> bool:
        return self.construct_scalar(node).lower() == "true"


for _tag, _pattern, _first in _CORE_RESOLVERS:
    _GraphLoader.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))
_GraphLoader.yaml_constructors = {
    tag: constructor
    for tag, constructor in yaml.SafeLoader.yaml_constructors.items()
    if tag is None or tag.rsplit(":", 1)[-1] in ("null", "str", "seq", "map")
}
_GraphLoader.add_constructor("tag:yaml.org,2002:int", _GraphLoader.construct_yaml_int)
_GraphLoader.add_constructor("tag:yaml.org,2002:float", _GraphLoader.construct_yaml_float)
_GraphLoader.add_constructor("tag:yaml.org,2002:bool", _GraphLoader.construct_yaml_bool)


def _line_of(mark: Any) -> int | None:
    return mark.line + 1 if mark is not None else None


def _show(key: Any) -> str:
    text = repr(key)
    return text if len(text) <= 60 else text[:57] + "..."


def _load_yaml(text: str) -> tuple[Any, Node | None]:
    """The data of a YAML document, and its node tree (for the lines of later errors)."""
    loader = _GraphLoader(text)
    try:
        node = loader.get_single_node()
        return (loader.construct_document(node) if node is not None else None), node
    finally:
        loader.dispose()


def _yaml_line(root: Node | None, loc: tuple[Any, ...]) -> int | None:
    """The line of the deepest value on the path ``loc`` that the document has."""
    node, line = root, None
    for part in loc:
        if isinstance(node, MappingNode):
            found = next(
                (pair for pair in node.value if getattr(pair[0], "value", None) == part), None
            )
            if found is None:
                break
            line, node = found[0].start_mark.line + 1, found[1]
        elif isinstance(node, SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


# -- JSON: depth and duplicate keys found by a flat tokenizer ------------------


def _json_line(text: str, loc: tuple[Any, ...]) -> int | None:
    """The line of the deepest key or list item on the path ``loc`` (one flat pass)."""
    path: list[Any] = []  # per open bracket: the current key (object) or index (array)
    arrays: list[bool] = []
    expect_key = False
    best: tuple[int, int] | None = None  # (depth matched, line)
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        first = token[0]
        if first in "{[":
            path.append(None if first == "{" else 0)
            arrays.append(first == "[")
            expect_key = first == "{"
        elif first in "}]":
            if path:
                path.pop()
                arrays.pop()
            expect_key = False
        elif first == ",":
            if arrays and arrays[-1]:
                path[-1] += 1
            expect_key = bool(arrays) and not arrays[-1]
        elif first == ":":
            expect_key = False
        else:
            if expect_key and path:
                try:
                    path[-1] = json.loads(token)
                except ValueError:
                    path[-1] = None
            expect_key = False
        depth = len(path) if first not in "}]" else 0
        if depth and tuple(path) == tuple(loc[:depth]) and (best is None or depth > best[0]):
            best = (depth, _line_at(text, match.start()))
    return best[1] if best is not None else None


_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\],:]', re.DOTALL)


def _scan_json(text: str) -> tuple[int, str] | None:
    """Refuse nesting deeper than MAX_DEPTH; the first duplicate key (line, key), if any.

    A flat pass over strings and brackets, so it cannot recurse; json.loads then
    parses a text known to be shallow.
    """
    stack: list[set[str] | None] = []  # a set of keys per open object, None per array
    expect_key = False
    duplicate: tuple[int, str] | None = None
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        first = token[0]
        if first in "{[":
            if len(stack) >= MAX_DEPTH:
                raise _InputError(
                    f"nested deeper than {MAX_DEPTH} levels", _line_at(text, match.start())
                )
            stack.append(set() if first == "{" else None)
            expect_key = first == "{"
        elif first in "}]":
            if stack:
                stack.pop()
            expect_key = False
        elif first == ",":
            expect_key = bool(stack) and stack[-1] is not None
        elif first == ":":
            expect_key = False
        else:
            keys = stack[-1] if stack else None
            if expect_key and keys is not None and duplicate is None:
                try:
                    key = json.loads(token)
                except ValueError:
                    key = token
                if key in keys:
                    duplicate = (_line_at(text, match.start()), key)
                keys.add(key)
            expect_key = False
    return duplicate


class _DuplicateKey(Exception):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return result


def _json_number(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _InputError("number too long")
    value = float(text)
    if not math.isfinite(value):
        raise _InputError(f"{text} is not allowed: numbers must be finite")
    return value


def _json_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _InputError("number too long")
    return int(text)


def _json_constant(name: str) -> Any:
    raise _InputError(f"{name} is not allowed: numbers must be finite (it is not JSON)")


def _load_json(text: str) -> Any:
    duplicate = _scan_json(text)
    try:
        return json.loads(
            text,
            object_pairs_hook=_unique_pairs,
            parse_float=_json_number,
            parse_int=_json_int,
            parse_constant=_json_constant,
        )
    except _DuplicateKey as exc:
        key = exc.args[0]
        line = duplicate[0] if duplicate is not None and duplicate[1] == key else None
        raise _InputError(f"duplicate key {_show(key)}", line) from None


# -- values: JSON data only -----------------------------------------------------


def _check_values(data: Any) -> None:
    """Keys are strings, strings are valid Unicode without NUL, numbers are finite
    (iteratively)."""
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise _InputError(f"{where or 'top level'}: key {_show(key)} is not a string")
                _check_text(key, where)
                stack.append((item, f"{where}.{key}" if where else key))
        elif isinstance(value, list):
            stack.extend((item, f"{where}.{i}") for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_text(value, where)
        elif isinstance(value, float) and not math.isfinite(value):
            raise _InputError(f"{where}: numbers must be finite")


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _InputError(
            f"{where or 'top level'}: not valid Unicode"
            f" (unpaired surrogate U+{ord(text[exc.start]):04X})"
        ) from None
    if "\x00" in text:  # no store can hold it (PostgreSQL's JSONB refuses it)
        raise _InputError(f"{where or 'top level'}: contains a NUL character (U+0000)")


def load_graph_file(path: Path) -> GraphFile:
    """Read and validate a task-graph file (YAML, or JSON if it ends in ``.json``).

    Bounds and rules are the module's (see its docstring and the README).

    Raises:
        PlanError: any problem, as one line starting with ``path`` (with ``line N``
            where it is known); never another exception for any file content.
    """
    if not is_utf8(str(path)):  # it is stored with the request: records are JSON
        raise PlanError(f"{shown(str(path))}: the file's path is not valid UTF-8")
    try:
        data = textfiles.read_bytes(path, MAX_FILE_BYTES)
    except textfiles.TextFileError as exc:
        raise PlanError(f"{path}: {exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise PlanError(
            f"{path}: larger than {MAX_FILE_BYTES} bytes (1 MiB), the limit for a task-graph file"
        )
    try:
        text = textfiles.decode(data)
        is_json = path.suffix.lower() == ".json"
        content, root = (_load_json(text), None) if is_json else _load_yaml(text)
        _check_values(content)
    except textfiles.TextFileError as exc:
        raise PlanError(f"{path}: {exc}") from None
    except _InputError as exc:
        where = f" line {exc.line}:" if exc.line is not None else ""
        raise PlanError(f"{path}:{where} {exc.message}") from None
    except json.JSONDecodeError as exc:
        raise PlanError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    except yaml.reader.ReaderError as exc:
        line = _line_at(text, exc.position)
        raise PlanError(
            f"{path}: invalid YAML at line {line}: unacceptable character"
            f" #x{exc.character if isinstance(exc.character, int) else 0:04x}"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        problem = " ".join(str(problem).split())
        raise PlanError(f"{path}: invalid YAML{where}: {problem}") from None
    if not isinstance(content, dict):
        raise PlanError(f"{path}: expected a mapping with 'name' and 'tasks' at the top")
    try:
        return GraphFile.model_validate(content)
    except ValidationError as exc:
        loc = tuple(exc.errors()[0]["loc"])
        at = _json_line(text, loc) if is_json else _yaml_line(root, loc)
        where = f" line {at}:" if at is not None else ""
        raise PlanError(f"{path}:{where} {describe_validation_error(exc)}") from None
