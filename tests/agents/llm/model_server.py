"""A real aiohttp server on loopback that answers as a model API would, from a script.

Each request is recorded (path, headers, JSON body) and answered by the next
:class:`Reply` of the script, or by a ``responder`` function of the request.
Replies can be JSON, raw bytes (malformed JSON), Server-Sent Events, any status
with headers (``Retry-After``), and can come late (``delay``) to pass a timeout.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Reply:
    """One scripted answer."""

    status: int = 200
    body: Any = None
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    events: list[tuple[str | None, Any]] | None = None
    """SSE events (name or None, JSON data or a raw string) sent one by one."""


@dataclass
class Seen:
    """One request the server received."""

    path: str
    headers: dict[str, str]
    body: Any
    query: str = ""
    """The query string as sent (without the ``?``)."""


class ModelServer:
    """The server; ``url`` once started. Use :func:`model_server`."""

    def __init__(self, responder: Callable[[Seen], Reply] | None = None) -> None:
        self.replies: deque[Reply] = deque()
        self.requests: list[Seen] = []
        self.responder = responder
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._lock = threading.Lock()

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies``, in order."""
        self.replies.extend(replies)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        seen = Seen(request.path, dict(request.headers), body, request.query_string)
        with self._lock:
            self.requests.append(seen)
            if self.responder is not None:
                reply = self.responder(seen)
            elif self.replies:
                reply = self.replies.popleft()
            else:
                reply = Reply(500, {"error": {"message": "the test script has no more replies"}})
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.events is not None:
            response = web.StreamResponse(status=reply.status, headers=reply.headers)
            response.content_type = "text/event-stream"
            await response.prepare(request)
            for name, data in reply.events:
                text = data if isinstance(data, str) else json.dumps(data)
                frame = (f"event: {name}\n" if name else "") + f"data: {text}\n\n"
                await response.write(frame.encode())
                await asyncio.sleep(0)
            await response.write_eof()
            return response
        if reply.raw is not None:
            return web.Response(
                status=reply.status,
                body=reply.raw,
                headers=reply.headers,
                content_type="application/json",
            )
        return web.json_response(reply.body, status=reply.status, headers=reply.headers)

    def _serve(self, ready: threading.Event) -> None:
        async def main() -> None:
            app = web.Application()
            app.router.add_route("POST", "/{tail:.*}", self.handle)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            self.url = f"http://127.0.0.1:{port}"
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            ready.set()
            await self._stop.wait()
            await runner.cleanup()

        asyncio.run(main())

    @contextmanager
    def running(self) -> Iterator[ModelServer]:
        """Serve in a thread of its own until the block ends."""
        ready = threading.Event()
        thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        thread.start()
        assert ready.wait(10), "the model server did not start"
        try:
            yield self
        finally:
            assert self._loop is not None and self._stop is not None
            self._loop.call_soon_threadsafe(self._stop.set)
            thread.join(10)


def openai_reply(text: str, tokens_in: int = 10, tokens_out: int = 5) -> Reply:
    """A chat-completions answer."""
    return Reply(
        body={
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": tokens_in,
                "completion_tokens": tokens_out,
                "total_tokens": tokens_in + tokens_out,
            },
        }
    )


def anthropic_reply(text: str, tokens_in: int = 10, tokens_out: int = 5) -> Reply:
    """A Messages API answer."""
    return Reply(
        body={
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out},
        }
    )
