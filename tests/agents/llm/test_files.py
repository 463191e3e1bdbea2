"""The FILE: reply format: paths, fences of any length, safety."""

from __future__ import annotations

import pytest

from connectsw.agents.llm.files import FileBlock, check_path, parse_files, strip_fence
from connectsw.core.errors import LLMBadResponse


def test_files_in_order_with_text_between_ignored() -> None:
    reply = (
        "Sure, here you go.\n\nFILE: a/b.py\n```python\nx = 1\n\n\ny = 2\n```\n"
        "and then\n**FILE: `docs/c.md`**\n\n```\n# C\n```\n"
    )
    assert parse_files(reply) == [
        FileBlock("a/b.py", "x = 1\n\n\ny = 2\n"),
        FileBlock("docs/c.md", "# C\n"),
    ]


def test_a_longer_fence_holds_inner_fences() -> None:
    reply = "FILE: docs/a.md\n````markdown\n# A\n```sh\nrun\n```\nafter\n````\n"
    assert parse_files(reply) == [FileBlock("docs/a.md", "# A\n```sh\nrun\n```\nafter\n")]


def test_tilde_fences_and_an_empty_file() -> None:
    reply = "FILE: x/__init__.py\n~~~\n~~~\nFILE: y.txt\n~~~~\nhi\n~~~~~\n"
    assert parse_files(reply) == [FileBlock("x/__init__.py", "\n"), FileBlock("y.txt", "hi\n")]


def test_a_later_block_replaces_an_earlier_one() -> None:
    reply = "FILE: a.py\n```\n1\n```\nFILE: a.py\n```\n2\n```\n"
    assert parse_files(reply) == [FileBlock("a.py", "2\n")]


def test_no_blocks_is_empty() -> None:
    assert parse_files("I cannot do that.") == []


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ("FILE: a.py\nx = 1\n", "is not followed by a fenced block"),
        ("FILE: a.py\n```\nx = 1\n", "is not closed"),
        ("FILE: ../etc/passwd\n```\nx\n```\n", "unsafe file path '../etc/passwd'"),
        ("FILE: /etc/passwd\n```\nx\n```\n", "unsafe file path '/etc/passwd'"),
        ("FILE: .git/config\n```\nx\n```\n", "unsafe file path"),
    ],
)
def test_bad_replies_are_one_line_errors(reply: str, message: str) -> None:
    with pytest.raises(LLMBadResponse, match=message):
        parse_files(reply)


def test_allowed_prefixes() -> None:
    assert check_path("web/index.html", ("web/", "tests/")) == "web/index.html"
    with pytest.raises(LLMBadResponse, match="outside what this agent writes"):
        parse_files("FILE: service/app.py\n```\nx\n```\n", ("web/", "tests/"))


def test_strip_fence() -> None:
    assert strip_fence("```markdown\n# T\n\ntext\n```") == "# T\n\ntext\n"
    assert strip_fence("# T\n\n```sh\nx\n```\n") == "# T\n\n```sh\nx\n```\n"
    assert strip_fence("  # T  \n") == "# T\n"
