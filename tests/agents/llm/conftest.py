"""A scripted model server and the settings that point the openai provider at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectsw.conf.settings import get_settings

from .model_server import ModelServer


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelServer]:
    """The openai provider, model ``m``, pointed at a scripted server (no key)."""
    server = ModelServer()
    with server.running():
        monkeypatch.setenv("CONNECTSW_LLM__PROVIDER", "openai")
        monkeypatch.setenv("CONNECTSW_LLM__MODEL", "m")
        monkeypatch.setenv("CONNECTSW_LLM__OPENAI__BASE_URL", f"{server.url}/v1")
        monkeypatch.setenv("CONNECTSW_LLM__RETRY_BACKOFF", "0.01")
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        get_settings.cache_clear()
        yield server
    get_settings.cache_clear()
