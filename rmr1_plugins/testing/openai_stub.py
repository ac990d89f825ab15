"""A tiny OpenAI-style server on 127.0.0.1 for fault-injection tests of the openai backend.

In a thread (``StubServer``) it answers from a scripted async function; run as a script
(``python -m rmr1_plugins.testing.openai_stub PORT``) it accepts chat requests and never
answers, so a test can kill the process while requests are in flight.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

Handler = Callable[[dict[str, Any], int], Awaitable[web.Response]]


def completion(
    text: str = "<answer>[[A]]</answer>", finish: str = "stop", n: int = 1
) -> web.Response:
    """A chat completion answer with ``n`` identical choices and usage."""
    choices = [
        {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        for i in range(n)
    ]
    usage = {"prompt_tokens": 11, "completion_tokens": 7 * n, "total_tokens": 11 + 7 * n}
    body = {"id": "x", "object": "chat.completion", "choices": choices, "usage": usage}
    return web.json_response(body)


async def answer_ok(body: dict[str, Any], count: int) -> web.Response:
    return completion(n=body.get("n", 1))


class StubServer:
    """Serves ``/v1/chat/completions`` and ``/v1/models`` from ``handler(body, count)``."""

    def __init__(self, handler: Handler = answer_ok) -> None:
        self.handler = handler
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result()

    async def _start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}/v1"

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        self.headers.append(dict(request.headers))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self.handler(body, len(self.bodies))
        finally:
            self.in_flight -= 1

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "stub-model"}]})

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


def main() -> None:
    """Accept chat requests and hold them forever; print ``got`` for each one."""

    async def hold(request: web.Request) -> web.Response:
        await request.read()
        print("got", flush=True)
        await asyncio.sleep(3600)
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", hold)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)


if __name__ == "__main__":
    main()
