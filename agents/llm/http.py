"""The HTTP side the built-in providers share: keys, retries, timeouts, SSE, errors.

One call is one deadline (``timeout`` seconds from its start, waits between
retries included). HTTP 429 and 5xx and a dropped connection are retried up to
``llm.retries`` times, after ``Retry-After`` when the server sends one (seconds or
an HTTP date), else after ``llm.retry_backoff`` doubling; either is capped at
``llm.retry_backoff_max``, and a wait that would pass the deadline ends the call
at once. Every failure is an :class:`~connectsw.core.errors.LLMError` of one line
naming the provider and host; the key is never in it (a key refused gets no
server text at all, and the key is scrubbed from any other server text).

The Server-Sent Events parser is our own (a few lines, the WHATWG rules for
``event:`` and ``data:`` fields) rather than one more dependency.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from connectsw.agents.llm.base import Completion, Message, Usage
from connectsw.core import textfiles
from connectsw.core.errors import (
    LLMAuthError,
    LLMBadResponse,
    LLMError,
    LLMModelNotFound,
    LLMTimeout,
)

if TYPE_CHECKING:
    # Imported when a call is made: listing plugins must not import aiohttp (~50 ms).
    import aiohttp
    import yarl

T = TypeVar("T")
#: Bytes of an error answer read to find its message.
ERROR_BODY_LIMIT = 64 * 1024
#: Bytes of a whole (not streamed) answer read at most.
BODY_LIMIT = 16 * 1024 * 1024
#: Characters of a server's error message kept in ours.
MESSAGE_LIMIT = 300
RETRYABLE = frozenset({408, 409, 429}) | frozenset(range(500, 600))


@dataclass(frozen=True)
class Endpoint:
    """Where one provider's API is, its key (never printed) and how to retry."""

    provider: str
    base_url: str
    key: str | None
    key_source: str
    retries: int = 4
    retry_backoff: float = 1.0
    retry_backoff_max: float = 30.0

    def __repr__(self) -> str:  # the key stays out of any repr, log or traceback
        return f"Endpoint(provider={self.provider!r}, base_url={self.host!r})"

    @property
    def host(self) -> str:
        """``host[:port]`` of the base URL (no credentials, no path)."""
        parts = urlsplit(self.base_url)
        host = parts.hostname or self.base_url
        return f"{host}:{parts.port}" if parts.port else host

    @property
    def who(self) -> str:
        """``openai provider at api.openai.com``: how messages name the endpoint."""
        return f"{self.provider} provider at {self.host}"

    def url(self, path: str) -> yarl.URL:
        """The base URL with ``path`` appended to its path; its query is kept as the
        query (``http://h/v1?api-version=x`` + ``chat/completions`` ->
        ``http://h/v1/chat/completions?api-version=x``), its fragment dropped. Parsed
        and joined by yarl (aiohttp's URL type), not by string concatenation."""
        from yarl import URL

        base = URL(self.base_url)
        joined = base.raw_path.rstrip("/") + "/" + path.lstrip("/")
        return base.with_path(joined, encoded=True, keep_query=True)

    def scrub(self, text: str) -> str:
        """``text`` on one line, at most :data:`MESSAGE_LIMIT` characters, without the key
        in any form a server may echo it (raw, percent-encoded, JSON-escaped, base64:
        core/redact.py :func:`~connectsw.core.redact.mask_secret`), nor the base URL's
        secret query values (``?key=``, ``?sig=``...: core/redact.py's one rule,
        :func:`~connectsw.core.redact.url_secrets`), each masked as ``***``."""
        from connectsw.core.redact import mask_secret, url_secrets

        text = mask_secret(text, self.key, "[key]")
        for secret in sorted(url_secrets(self.base_url), key=len, reverse=True):
            text = mask_secret(text, secret)
        text = " ".join(text.split())
        return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."


MAX_KEY_FILE_BYTES = 65_536
"""An API key file is at most this many bytes."""


def read_key(env_name: str, key_file: Path | None) -> tuple[str | None, str]:
    """The API key from ``$env_name``, else the first line of ``key_file``; and where
    it came from, for messages (``environment variable X`` / ``file F``).

    The file is read as every user file is (core/textfiles.py), at most
    :data:`MAX_KEY_FILE_BYTES`. Raises :class:`LLMError` when it cannot be read, is
    larger or is not text (never quoting it).
    """
    from connectsw.core.supervisor import engine_getenv

    # os.environ, or the engine's copy in a process-isolated agent (which has not it).
    value = engine_getenv(env_name).strip()
    if value:
        return value, f"the environment variable {env_name}"
    if key_file is not None:
        path = Path(key_file).expanduser()
        try:  # as every user file (UTF-8 or a byte-order mark's); a bad byte is not quoted
            lines = textfiles.read_text(path, MAX_KEY_FILE_BYTES, show_bytes=False).splitlines()
        except textfiles.TextFileError as exc:
            raise LLMError(f"cannot read the API key file {path}: {exc}") from None
        first = lines[0].strip() if lines else ""
        if first:
            return first, f"the file {path}"
        return None, f"the file {path} (empty)"
    return None, f"the environment variable {env_name} (unset)"


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (number or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def error_message(data: Any) -> tuple[str, str]:
    """(code or type, message) of an OpenAI- or Anthropic-style JSON error body."""
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        code = error.get("code") or error.get("type") or ""
        return str(code), str(error.get("message") or "")
    if isinstance(error, str):
        return "", error
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data.get("type") or ""), data["message"]
    return "", ""


class Call:
    """One provider call: its deadline, the endpoint, the model asked for."""

    def __init__(self, endpoint: Endpoint, model: str, timeout: float) -> None:
        self.endpoint = endpoint
        self.model = model
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout

    def left(self) -> float:
        """Seconds until the deadline; raises :class:`LLMTimeout` when none are left."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self.timed_out()
        return left

    def timed_out(self) -> LLMTimeout:
        """The error for a call past its deadline."""
        return LLMTimeout(f"{self.endpoint.who} gave no answer within {self.timeout:g} s")

    async def within(self, awaitable: Awaitable[T]) -> T:
        """``awaitable``, or :class:`LLMTimeout` at the deadline."""
        import asyncio  # here: listing plugins (this module is a built-in's) skips it

        try:
            return await asyncio.wait_for(awaitable, self.left())
        except TimeoutError:
            raise self.timed_out() from None

    async def post(
        self,
        session: aiohttp.ClientSession,
        path: str,
        body: dict[str, Any],
        headers: dict[str, str],
    ) -> aiohttp.ClientResponse:
        """POST ``body`` as JSON; the response once its status is 2xx (retrying 429/5xx)."""
        import aiohttp

        ep = self.endpoint
        try:
            url = ep.url(path)
        except ValueError:  # settings check it first; the URL is not quoted (secrets)
            raise LLMError(f"{ep.provider} provider: invalid base URL") from None
        failure = ""
        for attempt in range(ep.retries + 1):
            wait: float | None = None
            try:
                response = await self.within(session.post(url, json=body, headers=headers))
            except aiohttp.InvalidURL:
                raise LLMError(f"{ep.provider} provider: invalid base URL") from None
            except aiohttp.ClientError as exc:  # refused, reset, not HTTP: worth a retry
                failure = f"cannot reach {ep.who} ({type(exc).__name__})"
            else:
                if response.status < 300:
                    return response
                try:
                    raw = await self.within(response.content.read(ERROR_BODY_LIMIT))
                finally:
                    response.release()
                self.refuse(response.status, raw)  # raises unless retryable
                _code, text = self._error_of(raw)
                failure = f"{ep.who} answered HTTP {response.status}" + (
                    f": {ep.scrub(text)}" if text else ""
                )
                wait = retry_after(response.headers.get("Retry-After"))
            if attempt == ep.retries:
                break
            if wait is None:
                wait = ep.retry_backoff * 2**attempt
            wait = min(wait, ep.retry_backoff_max)
            if time.monotonic() + wait >= self.deadline:
                raise LLMError(f"{failure}; no time left for a retry within {self.timeout:g} s")
            import asyncio

            await asyncio.sleep(wait)
        tries = ep.retries + 1
        raise LLMError(f"{failure} ({tries} {'try' if tries == 1 else 'tries'}; gave up)")

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        import aiohttp

        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in response.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > BODY_LIMIT:
                    raise LLMBadResponse(
                        f"{self.endpoint.who} answered more than {BODY_LIMIT} bytes"
                    )
                chunks.append(chunk)
        except aiohttp.ClientError as exc:
            raise LLMError(
                f"{self.endpoint.who} broke off its answer ({type(exc).__name__})"
            ) from None
        return b"".join(chunks)

    def _error_of(self, raw: bytes) -> tuple[str, str]:
        try:
            return error_message(json.loads(raw.decode("utf-8", "replace")))
        except ValueError:
            return "", raw.decode("utf-8", "replace")

    def refuse(self, status: int, raw: bytes) -> None:
        """Raise the error for a status that is not retried (401, 403, 404, other 4xx)."""
        ep = self.endpoint
        code, text = self._error_of(raw)
        detail = f": {ep.scrub(text)}" if text else ""
        if status in (401, 403):
            # No server text: some servers echo part of the key they refused.
            raise LLMAuthError(
                f"{ep.who} refused the API key (HTTP {status}); check {ep.key_source}"
            )
        if status == 404 or code in ("model_not_found", "not_found_error"):
            raise LLMModelNotFound(
                f"{ep.who} has no model {self.model!r} (HTTP {status}){detail}; check llm.model"
            )
        if status not in RETRYABLE:
            raise LLMError(f"{ep.who} refused the request (HTTP {status}){detail}")

    async def json_body(self, response: aiohttp.ClientResponse) -> Any:
        """The response's JSON; :class:`LLMBadResponse` if it is not JSON or larger than
        :data:`BODY_LIMIT`."""
        try:
            raw = await self.within(self._read(response))
        finally:
            response.release()
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise LLMBadResponse(
                f"{self.endpoint.who} answered malformed JSON ({len(raw)} bytes)"
            ) from None

    async def events(self, response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, Any]]:
        """The response's Server-Sent Events as (event name, parsed JSON data); a
        ``[DONE]`` data line ends them."""
        import aiohttp
        from aiohttp.http_exceptions import LineTooLong

        event, data = "", []
        try:
            while True:
                line = await self.within(response.content.readline())
                if not line:
                    break
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                if text.startswith(":"):
                    continue
                if text:
                    name, _, value = text.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "event":
                        event = value
                    elif name == "data":
                        data.append(value)
                    continue
                if not data:
                    event = ""
                    continue
                payload = "\n".join(data)
                if payload.strip() == "[DONE]":
                    break
                try:
                    parsed = json.loads(payload)
                except ValueError:
                    raise LLMBadResponse(
                        f"{self.endpoint.who} streamed malformed JSON in an event"
                    ) from None
                yield event or "message", parsed
                event, data = "", []
        except aiohttp.ClientError as exc:
            raise LLMError(
                f"{self.endpoint.who} broke off the stream ({type(exc).__name__})"
            ) from None
        except (LineTooLong, ValueError):  # aiohttp's readline refuses a line past its limit
            raise LLMBadResponse(f"{self.endpoint.who} streamed a line too long") from None
        finally:
            response.release()

    def missing(self, what: str) -> LLMBadResponse:
        """The error for an answer without a field the protocol promises."""
        return LLMBadResponse(f"{self.endpoint.who} answered without {what}")


def session(timeout: float) -> aiohttp.ClientSession:
    """A client session for one call (its own deadline is kept by :class:`Call`)."""
    import aiohttp

    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout + 5))


def run_sync(coro: Awaitable[T]) -> T:
    """Run a provider coroutine to its end from synchronous code (an agent's thread)."""

    import asyncio

    async def main() -> T:
        return await coro

    return asyncio.run(main())


def iterate_sync(agen: AsyncIterator[T]) -> Iterator[T]:
    """Iterate an async generator from synchronous code, on an event loop of its own."""
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                item = loop.run_until_complete(agen.__anext__())
            except StopAsyncIteration:
                break
            yield item
    finally:
        aclose = getattr(agen, "aclose", None)
        if aclose is not None:
            loop.run_until_complete(aclose())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


class HTTPProvider:
    """A provider over aiohttp; subclasses give the protocol's paths, bodies and parsing."""

    name = ""
    description = ""
    default_base_url = ""
    default_key_env = ""
    path = ""

    def endpoint(self) -> Endpoint:
        """This provider's endpoint from the settings (``[llm]`` and ``[llm.NAME]``)."""
        from connectsw.conf.settings import get_settings

        llm = get_settings().llm
        conf = getattr(llm, self.name)
        key, source = read_key(conf.api_key_env or self.default_key_env, conf.api_key_file)
        return Endpoint(
            provider=self.name,
            base_url=conf.base_url or self.default_base_url,
            key=key,
            key_source=source,
            retries=llm.retries,
            retry_backoff=llm.retry_backoff,
            retry_backoff_max=llm.retry_backoff_max,
        )

    def headers(self, endpoint: Endpoint) -> dict[str, str]:
        """Request headers, the key included."""
        raise NotImplementedError

    def body(
        self, messages: Sequence[Message], model: str, max_tokens: int, temperature: float
    ) -> dict[str, Any]:
        """The request's JSON body."""
        raise NotImplementedError

    def parse(self, call: Call, data: Any) -> Completion:
        """A completion from the answer's JSON; :class:`LLMBadResponse` if fields lack."""
        raise NotImplementedError

    def chunks(self, call: Call, event: str, data: Any, usage: dict[str, int]) -> str | None:
        """Text of one streamed event (None: none); fills ``usage`` (tokens_in, tokens_out)."""
        raise NotImplementedError

    def stream_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """The body asking for a stream."""
        return {**body, "stream": True}

    def complete(
        self,
        messages: Sequence[Message],
        *,
        model: str,
        max_tokens: int,
        temperature: float,
        timeout: float,
    ) -> Completion:
        """The whole reply (see :class:`~connectsw.agents.llm.base.LLMProvider`)."""
        endpoint = self.endpoint()
        call = Call(endpoint, model, timeout)
        body = self.body(messages, model, max_tokens, temperature)

        async def go() -> Completion:
            async with session(timeout) as http:
                response = await call.post(http, self.path, body, self.headers(endpoint))
                return self.parse(call, await call.json_body(response))

        return run_sync(go())

    def stream(
        self,
        messages: Sequence[Message],
        *,
        model: str,
        max_tokens: int,
        temperature: float,
        timeout: float,
    ) -> Iterator[str | Usage]:
        """Text chunks as they arrive, then the :class:`Usage`."""
        endpoint = self.endpoint()
        call = Call(endpoint, model, timeout)
        body = self.stream_body(self.body(messages, model, max_tokens, temperature))

        async def go() -> AsyncIterator[str | Usage]:
            async with session(timeout) as http:
                response = await call.post(http, self.path, body, self.headers(endpoint))
                usage: dict[str, int] = {}
                async for event, data in call.events(response):
                    text = self.chunks(call, event, data, usage)
                    if text:
                        yield text
                yield Usage(usage.get("tokens_in", 0), usage.get("tokens_out", 0))

        return iterate_sync(go())
