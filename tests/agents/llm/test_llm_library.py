"""The ``llm`` provider: the real ``llm`` library (its OpenAI-compatible model defined in
its own user directory) against the scripted loopback server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connectsw.agents.llm.base import Completion, Message, Usage
from connectsw.agents.llm.llm_library import LLMLibraryProvider
from connectsw.core.errors import LLMAuthError, LLMModelNotFound, LLMTimeout

from .model_server import ModelServer, Reply, openai_reply

MESSAGES = [
    Message("system", "Be terse."),
    Message("user", "Hi"),
    Message("assistant", "Hello."),
    Message("user", "Again"),
]
ARGS = {"max_tokens": 50, "temperature": 0.1, "timeout": 10.0}


@pytest.fixture
def library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelServer]:
    server = ModelServer()
    with server.running():
        home = tmp_path / "llm-home"
        home.mkdir()
        (home / "extra-openai-models.yaml").write_text(
            f"- model_id: scripted\n  model_name: scripted-model\n  api_base: {server.url}/v1\n"
        )
        monkeypatch.setenv("LLM_USER_PATH", str(home))
        yield server


def test_a_completion_through_the_library(library: ModelServer) -> None:
    library.script(openai_reply("Hello again.", 21, 4))
    done = LLMLibraryProvider().complete(MESSAGES, model="scripted", **ARGS)  # type: ignore[arg-type]
    assert done == Completion("Hello again.", 21, 4, None)
    (seen,) = library.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.body["model"] == "scripted-model"
    assert [(m["role"], m["content"]) for m in seen.body["messages"]] == [
        ("system", "Be terse."),
        ("user", "Hi"),
        ("assistant", "Hello."),
        ("user", "Again"),
    ]
    assert seen.body["max_tokens"] == 50 and seen.body["temperature"] == 0.1


def test_a_stream_through_the_library(library: ModelServer) -> None:
    chunk = {"object": "chat.completion.chunk", "model": "scripted-model"}
    library.script(
        Reply(
            events=[
                (None, {**chunk, "choices": [{"index": 0, "delta": {"content": "He"}}]}),
                (None, {**chunk, "choices": [{"index": 0, "delta": {"content": "y"}}]}),
                (
                    None,
                    {**chunk, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}},
                ),
                (None, "[DONE]"),
            ]
        )
    )
    items = list(LLMLibraryProvider().stream(MESSAGES, model="scripted", **ARGS))  # type: ignore[arg-type]
    assert "".join(i for i in items if isinstance(i, str)) == "Hey"
    assert isinstance(items[-1], Usage) and items[-1].tokens_in == 3


def test_an_unknown_model(library: ModelServer) -> None:
    with pytest.raises(LLMModelNotFound, match="the llm library has no model 'nope'"):
        LLMLibraryProvider().complete(MESSAGES, model="nope", **ARGS)  # type: ignore[arg-type]


def test_a_refused_key_is_one_line(library: ModelServer) -> None:
    library.script(
        Reply(401, {"error": {"message": "Incorrect API key sk-LEAK", "code": "invalid_api_key"}})
    )
    with pytest.raises(LLMAuthError) as info:
        LLMLibraryProvider().complete(MESSAGES, model="scripted", **ARGS)  # type: ignore[arg-type]
    assert "LEAK" not in str(info.value) and "\n" not in str(info.value)


def test_a_slow_answer_is_abandoned_at_the_deadline(library: ModelServer) -> None:
    library.script(Reply(delay=5, body={}))
    with pytest.raises(LLMTimeout, match="gave no answer within 0.5 s"):
        LLMLibraryProvider().complete(MESSAGES, model="scripted", **{**ARGS, "timeout": 0.5})  # type: ignore[arg-type]
