"""The engineers' write-run-fix loop with a real provider and a scripted server."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectsw.agents.backend_engineer import BackendEngineerAgent
from connectsw.agents.base import TaskContext
from connectsw.agents.frontend_engineer import FrontendEngineerAgent
from connectsw.agents.llm.coding import artifact_type, is_test_file
from connectsw.conf.settings import get_settings
from connectsw.core.errors import LLMBadResponse, TaskError
from connectsw.core.models import LLMUsage, Request, TaskSpec

from .model_server import ModelServer, openai_reply

BROKEN = """FILE: service/__init__.py
```python
```
FILE: service/calc.py
```python
def double(x):
    return x + 1
```
FILE: tests/__init__.py
```python
```
FILE: tests/test_calc.py
```python
import unittest

from service.calc import double


class DoubleTest(unittest.TestCase):
    def test_double(self):
        self.assertEqual(double(4), 8)
```
"""
FIXED = "FILE: service/calc.py\n```python\ndef double(x):\n    return 2 * x\n```\n"


def ctx(workspace: Path, agent: str, **with_: str) -> TaskContext:
    return TaskContext(
        execution_id="exec_test",
        task=TaskSpec(id="t", agent=agent, **{"with": with_}),
        workspace=workspace,
        request=Request(command="new product", args=["a doubler"]),
        feedback=["Keep it tiny"],
        timeout=120,
    )


def test_failing_tests_are_fed_back_until_they_pass(tmp_path: Path, model: ModelServer) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/PRD.md").write_text("# Doubler\n\n## Features\n\n- Double\n")
    model.script(openai_reply(BROKEN, 40, 20), openai_reply(FIXED, 60, 10))
    agent = BackendEngineerAgent()
    assert agent.brief is False  # a model is configured: its start is recorded first
    c = ctx(tmp_path, "backend-engineer")
    out = agent.run(c)
    assert (tmp_path / "service/calc.py").read_text() == FIXED.split("```python\n")[1].split("```")[
        0
    ]
    assert out.outputs["fix_rounds"] == 1
    assert out.outputs["tests"] == ["tests/test_calc.py"]
    assert sorted(a.path for a in out.artifacts) == [
        "service/__init__.py",
        "service/calc.py",
        "tests/__init__.py",
        "tests/test_calc.py",
    ]
    assert c.usage == LLMUsage(calls=2, tokens_in=100, tokens_out=30, cost=0.0)
    first, second = (r.body["messages"] for r in model.requests)
    assert "# Doubler" in first[1]["content"] and "Keep it tiny" in first[1]["content"]
    assert "FILE: service/app.py" in first[0]["content"]  # the format is in the prompt
    assert second[2] == {"role": "assistant", "content": BROKEN}
    assert "test_double" in second[3]["content"] and "AssertionError" in second[3]["content"]


def test_rounds_run_out(
    tmp_path: Path, model: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONNECTSW_LLM__FIX_ROUNDS", "1")
    get_settings.cache_clear()
    model.script(openai_reply(BROKEN), openai_reply(BROKEN), openai_reply(FIXED))
    c = ctx(tmp_path, "backend-engineer")
    with pytest.raises(TaskError) as info:
        BackendEngineerAgent().run(c)
    assert str(info.value).startswith("tests still fail after 1 fix round: 1 failed, 0 passed (")
    assert len(model.requests) == 2
    assert c.usage.calls == 2  # recorded with the failed attempt


def test_a_reply_without_files(tmp_path: Path, model: ModelServer) -> None:
    model.script(openai_reply("I would rather not."))
    with pytest.raises(LLMBadResponse, match="no FILE: blocks"):
        BackendEngineerAgent().run(ctx(tmp_path, "backend-engineer"))


def test_a_feature_with_a_model_sees_the_current_sources(
    tmp_path: Path, model: ModelServer
) -> None:
    (tmp_path / "service").mkdir()
    (tmp_path / "service/calc.py").write_text("def double(x):\n    return 2 * x\n")
    model.script(openai_reply(FIXED))
    out = BackendEngineerAgent().run(ctx(tmp_path, "backend-engineer", feature="triple too"))
    brief = model.requests[0].body["messages"][1]["content"]
    assert "Implement this feature in the existing code: triple too" in brief
    assert "FILE: service/calc.py\n````\ndef double(x):" in brief
    assert out.outputs["fix_rounds"] == 0 and out.outputs["tests"] == []


def test_the_frontend_writes_only_web_and_tests(tmp_path: Path, model: ModelServer) -> None:
    model.script(openai_reply(BROKEN))
    with pytest.raises(LLMBadResponse, match="wrote 'service/__init__.py', outside"):
        FrontendEngineerAgent().run(ctx(tmp_path, "frontend-engineer"))
    assert not (tmp_path / "service").exists()


def test_the_frontend_page_and_its_passing_test(tmp_path: Path, model: ModelServer) -> None:
    page = (
        "FILE: web/index.html\n```html\n<title>D</title>\n```\n"
        "FILE: tests/test_web.py\n```python\nimport unittest\nfrom pathlib import Path\n\n\n"
        "class T(unittest.TestCase):\n    def test_page(self):\n"
        "        self.assertIn('<title>', Path('web/index.html').read_text())\n```\n"
    )
    model.script(openai_reply(page))
    out = FrontendEngineerAgent().run(ctx(tmp_path, "frontend-engineer"))
    assert out.outputs == {
        "files": ["web/index.html", "tests/test_web.py"],
        "tests": ["tests/test_web.py"],
        "fix_rounds": 0,
    }
    assert [a.type for a in out.artifacts] == ["page", "test"]


def test_artifact_types_and_test_files() -> None:
    assert [artifact_type(p) for p in ("tests/x.py", "a/README.md", "web/i.html", "s/a.py")] == [
        "test",
        "document",
        "page",
        "code",
    ]
    assert is_test_file("tests/test_a.py") and is_test_file("pkg/a_test.py")
    assert not is_test_file("tests/__init__.py") and not is_test_file("test_a.txt")


def test_a_file_name_that_is_not_utf8_is_left_out_of_the_prompt(tmp_path: Path) -> None:
    """Trial 5, item 9: such a name cannot go into a JSON request to the model."""
    import os

    from connectsw.agents.llm.context import design_paths, sources

    (tmp_path / "docs/adr").mkdir(parents=True)
    (tmp_path / "docs/adr" / os.fsdecode(b"0001-caf\xe9.md")).write_text("# ADR\n")
    (tmp_path / "docs/adr/0002-ok.md").write_text("# ADR\n")
    (tmp_path / os.fsdecode(b"caf\xe9.py")).write_text("x = 1\n")
    (tmp_path / "ok.py").write_text("y = 2\n")
    c = ctx(tmp_path, "backend-engineer")
    assert design_paths(c)[2:] == ["docs/adr/0002-ok.md"]
    text = sources(c)
    assert "FILE: ok.py" in text and "x = 1" not in text
    text.encode("utf-8")
