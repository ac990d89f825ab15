"""``openai``: any OpenAI-compatible ``/chat/completions`` server, over aiohttp.

For ``vllm serve``, sglang or a hosted API. Several base URLs (a fleet of replicas) share the
load; concurrency is bounded per URL; failed requests are retried with backoff on another URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import re
import threading
import time
import weakref
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field, field_validator

from rmr1_plugins._imports import require
from rmr1_plugins.backends._common import restore_answer_stop, stop_strings
from rmr1_plugins.backends.base import (
    Backend,
    BackendError,
    BackendOptions,
    ChatMessages,
    Generation,
    SamplingParams,
)
from rmr1_plugins.errors import RMR1Error
from rmr1_plugins.verdict_probs import TOP_LOGPROBS, TokenChoice, probability_fields

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
COOLDOWN_S = 5.0  # how long a URL that refused or dropped a connection is avoided


class OpenAIOptions(BackendOptions):
    base_url: str | list[str] = Field(
        "http://127.0.0.1:8000/v1", description="one URL or a list; each ends in /v1"
    )
    api_key_env: str = Field("OPENAI_API_KEY", description="variable holding the API key")
    max_concurrency: int = Field(256, ge=1, description="requests in flight per base URL")
    timeout_s: float = Field(600.0, gt=0, description="seconds for one request, all included")
    connect_timeout_s: float = Field(10.0, gt=0)
    max_retries: int = Field(4, ge=0, description="retries after the first attempt")
    retry_backoff_s: float = Field(0.5, ge=0, description="first retry delay in seconds; doubles")
    max_retry_backoff_s: float = Field(20.0, ge=0)
    stop_at_answer: bool = Field(True, description="end each judgment at its first </answer>")
    sort_prompts: bool = Field(True, description="send prompts sharing a prefix together")
    group_affinity: bool = Field(
        False,
        description="send every comparison of one question to the same URL (its prefix cache) "
        "and spread questions over the URLs",
    )
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="extra request fields (chat_template_kwargs, ...)"
    )
    headers: dict[str, str] = Field(default_factory=dict)
    reasoning_model: bool | None = Field(
        None,
        description="send max_completion_tokens and no temperature, top_p or stop, as OpenAI's "
        "reasoning models (o1, o3, o4-mini, gpt-5...) require; None: from the model name",
    )

    @field_validator("base_url")
    @classmethod
    def _urls(cls, value: str | list[str]) -> str | list[str]:
        urls = [value] if isinstance(value, str) else value
        if not urls:
            raise ValueError("base_url needs at least one URL")
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"base_url {url!r} must start with http:// or https://")
        return value


class _Retryable(RMR1Error):
    def __init__(self, message: str, retry_after: float | None = None, down: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        self.down = down  # the URL itself is unreachable: avoid it for a while


class _Runtime:
    """The backend's event loop, its thread and the HTTP session living on it."""

    def __init__(self, urls: int, max_concurrency: int) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="rmr1-openai-loop", daemon=True
        )
        self.thread.start()
        self.session: Any = None
        self.semaphores = [asyncio.Semaphore(max_concurrency) for _ in range(urls)]

    def shutdown(self) -> None:
        """Close the session and stop the loop (idempotent; nothing to do in a forked child)."""
        if self.pid != os.getpid() or self.loop.is_closed():
            return
        if self.session is not None and self.loop.is_running():
            with contextlib.suppress(Exception):  # best effort; the loop goes anyway
                future = asyncio.run_coroutine_threadsafe(self.session.close(), self.loop)
                future.result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self.thread is not threading.current_thread():
            self.thread.join(timeout=5)
        if not self.loop.is_running():
            self.loop.close()


class OpenAIBackend(Backend):
    """Sends each conversation as one ``/chat/completions`` request (``n`` samples in it).

    ``model`` is the served model name; when it is ``None`` the first model listed by
    ``/models`` is used. Requests sharing a prefix are sent together and to the same URL (a
    batch is split into contiguous runs, one per URL), so replicas keep their prefix caches;
    with ``group_affinity`` each question's comparisons all go to one URL chosen by a hash of
    the question, whichever call they come in (one call per group from ``rmr1 serve``).
    Connection errors, timeouts and HTTP 408/409/425/429/5xx are retried with exponential
    backoff and jitter, on another URL when there is one; other 4xx answers and exhausted
    retries raise :class:`BackendError`.

    All I/O runs on an event loop owned by the backend, in a daemon thread. :meth:`agenerate`
    awaits it from any event loop (so one session and one concurrency limit serve every
    caller); :meth:`generate` blocks the calling thread until the batch is done, which also
    works in a thread whose own loop is running, but then stalls that loop: use
    :meth:`agenerate` there.
    """

    name = "openai"
    Options = OpenAIOptions
    independent_requests = True
    opts: OpenAIOptions
    pickles_settings_only = True

    def _setup(self) -> None:
        base = self.opts.base_url
        self.urls = [url.rstrip("/") for url in ([base] if isinstance(base, str) else base)]
        self._lock = threading.Lock()
        self._runtime: _Runtime | None = None
        self._down_until = [0.0] * len(self.urls)
        self._next_url = 0
        self._served_model: str | None = self.model
        self.stats: Counter[str] = Counter()

    # -- the private event loop --------------------------------------------------------------

    def _rt(self) -> _Runtime:
        with self._lock:
            runtime = self._runtime
            if runtime is None or runtime.pid != os.getpid():  # new, or inherited by fork
                runtime = _Runtime(len(self.urls), self.opts.max_concurrency)
                weakref.finalize(self, runtime.shutdown)  # also at interpreter exit
                self._runtime = runtime
            return runtime

    def generate(
        self, conversations: Sequence[ChatMessages], params: SamplingParams
    ) -> list[list[Generation]]:
        runtime = self._rt()
        if threading.current_thread() is runtime.thread:
            raise RuntimeError("generate() called on the backend's own event loop")
        coroutine = self._batch(conversations, params)
        return asyncio.run_coroutine_threadsafe(coroutine, runtime.loop).result()

    async def agenerate(
        self, conversations: Sequence[ChatMessages], params: SamplingParams
    ) -> list[list[Generation]]:
        coroutine = self._batch(conversations, params)
        future = asyncio.run_coroutine_threadsafe(coroutine, self._rt().loop)
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        with self._lock:
            runtime, self._runtime = self._runtime, None
        if runtime is not None:
            runtime.shutdown()

    # -- requests (all on the private loop) --------------------------------------------------

    async def _client(self) -> Any:
        runtime = self._rt()
        if runtime.session is None:
            aiohttp = require("aiohttp", "openai")
            headers = dict(self.opts.headers)
            variable = self.opts.api_key_env
            key = os.environ.get(variable)
            if key:
                headers.setdefault("Authorization", f"Bearer {key}")
            elif variable != OpenAIOptions.model_fields["api_key_env"].default:
                raise ValueError(f"api_key_env names {variable!r}, but it is not set")
            runtime.session = aiohttp.ClientSession(
                headers=headers, connector=aiohttp.TCPConnector(limit=0)
            )
        return runtime.session

    async def _batch(
        self, conversations: Sequence[ChatMessages], params: SamplingParams
    ) -> list[list[Generation]]:
        if not conversations:
            return []
        await self._client()
        model = self._served_model or await self._discover_model()
        order = list(range(len(conversations)))
        if self.opts.sort_prompts:
            order.sort(key=lambda i: [m.get("content", "") for m in conversations[i]])
        first, self._next_url = self._next_url, (self._next_url + 1) % len(self.urls)
        tasks = []
        for position, index in enumerate(order):
            if self.opts.group_affinity:
                url = affinity(conversations[index]) % len(self.urls)
            else:
                url = (first + position * len(self.urls) // len(order)) % len(self.urls)
            body = self._body(model, conversations[index], params)
            tasks.append(asyncio.ensure_future(self._complete(body, params, url)))
        try:
            done = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        results: list[list[Generation]] = [[] for _ in conversations]
        for index, generations in zip(order, done, strict=True):
            results[index] = generations
        return results

    def _body(
        self, model: str, conversation: ChatMessages, params: SamplingParams
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in conversation],
            "n": params.num_samples,
        }
        if params.seed is not None:
            body["seed"] = params.seed
        reasoning = self.opts.reasoning_model
        if reasoning is None:
            reasoning = is_reasoning_model(model)
        if reasoning:  # these reject max_tokens, a temperature, top_p, stop and logprobs
            if params.verdict_probs:
                raise BackendError(
                    f"model {model!r}: reasoning models return no logprobs, so verdict_probs "
                    "cannot be read; turn verdict_probs off"
                )
            body["max_completion_tokens"] = params.max_new_tokens
            body.update(self.opts.extra_body)
            return body
        body.update(max_tokens=params.max_new_tokens, temperature=params.temperature)
        if params.temperature > 0:
            body["top_p"] = params.top_p
        if params.verdict_probs:
            body.update(logprobs=True, top_logprobs=TOP_LOGPROBS)
        stops = stop_strings(params, self.opts.stop_at_answer)
        if stops:
            body["stop"] = stops
        body.update(self.opts.extra_body)
        return body

    async def _complete(
        self, body: dict[str, Any], params: SamplingParams, preferred: int
    ) -> list[Generation]:
        data = await self._call("POST", "/chat/completions", preferred, body)
        choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != params.num_samples:
            raise BackendError(
                f"asked {self._where()} for {params.num_samples} completions, got {len(choices)}: "
                f"{json.dumps(data)[:300]}"
            )
        usage = data.get("usage") or {}
        prompt_tokens = usage.get("prompt_tokens")
        output_tokens = usage.get("completion_tokens") if params.num_samples == 1 else None
        generations = []
        for choice in choices:
            message = choice.get("message") or {}
            text = message.get("content") or ""
            reasoning = message.get("reasoning_content") or message.get("reasoning")
            if reasoning and "</think>" not in text:  # a server-side reasoning parser split it
                text = f"<think>{reasoning}</think>{text}"
            finish = choice.get("finish_reason")
            # a reasoning model's request carries no stop, so nothing was stripped
            text = restore_answer_stop(text, finish, self.opts.stop_at_answer and "stop" in body)
            read = _tokens(choice) if params.verdict_probs else None
            generations.append(
                Generation(text, finish, output_tokens, prompt_tokens, **probability_fields(read))
            )
        return generations

    async def _discover_model(self) -> str:
        data = await self._call("GET", "/models", self._next_url, None)
        models = [entry.get("id") for entry in data.get("data") or [] if entry.get("id")]
        if not models:
            raise BackendError(f"{self._where()}/models lists no model; set the model name")
        self._served_model = models[0]
        return models[0]

    async def _call(
        self, method: str, path: str, preferred: int, body: dict[str, Any] | None
    ) -> dict[str, Any]:
        """One request with retries; each retry goes to the next URL that is not down."""
        attempts = self.opts.max_retries + 1
        problem = None
        for attempt in range(attempts):
            index = self._pick(preferred + attempt)
            self.stats["requests"] += 1
            try:
                async with self._rt().semaphores[index]:
                    return await self._send(method, self.urls[index] + path, body)
            except _Retryable as error:
                problem = error
                if error.down:
                    self._down_until[index] = time.monotonic() + COOLDOWN_S
            if attempt + 1 < attempts:
                self.stats["retries"] += 1
                await asyncio.sleep(self._delay(attempt, problem.retry_after))
        self.stats["failures"] += 1
        raise BackendError(f"{method} {path} failed after {attempts} attempt(s): {problem}")

    async def _send(self, method: str, url: str, body: dict[str, Any] | None) -> dict[str, Any]:
        aiohttp = require("aiohttp", "openai")
        timeout = aiohttp.ClientTimeout(
            total=self.opts.timeout_s, sock_connect=self.opts.connect_timeout_s
        )
        try:
            session = await self._client()
            async with session.request(method, url, json=body, timeout=timeout) as reply:
                text = await reply.text()
                status = reply.status
                retry_after = _seconds(reply.headers.get("Retry-After"))
        except asyncio.TimeoutError as error:
            raise _Retryable(f"{url}: no answer within {self.opts.timeout_s:g} s") from error
        except aiohttp.ClientConnectorError as error:
            raise _Retryable(f"{url}: cannot connect ({error.os_error})", down=True) from error
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as error:
            raise _Retryable(f"{url}: connection lost ({error})", down=True) from error
        except aiohttp.ClientError as error:
            raise _Retryable(f"{url}: {type(error).__name__}: {error}") from error
        if status in RETRY_STATUSES:
            raise _Retryable(f"{url}: HTTP {status}: {text[:300]}", retry_after=retry_after)
        if status >= 400:
            raise BackendError(f"{url}: HTTP {status} (not retried): {text[:500]}")
        try:
            data = json.loads(text)
        except ValueError as error:
            raise _Retryable(f"{url}: the answer is not JSON: {text[:200]!r}") from error
        if not isinstance(data, dict):
            raise _Retryable(f"{url}: the answer is not a JSON object: {text[:200]!r}")
        return data

    def _pick(self, start: int) -> int:
        """The first URL from ``start`` on that is not cooling down (or ``start`` if all are)."""
        now = time.monotonic()
        count = len(self.urls)
        for step in range(count):
            index = (start + step) % count
            if self._down_until[index] <= now:
                return index
        return start % count

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.opts.max_retry_backoff_s)
        ceiling = min(self.opts.retry_backoff_s * 2**attempt, self.opts.max_retry_backoff_s)
        return random.uniform(ceiling / 2, ceiling)

    def _where(self) -> str:
        return self.urls[0] if len(self.urls) == 1 else f"{len(self.urls)} servers"


RESPONSE_A = "[The Start of Chatbot A's Response]"


_REASONING_MODEL = re.compile(r"(o\d+|gpt-5)([-.:].*)?")


def is_reasoning_model(model: str) -> bool:
    """Whether ``model`` names an OpenAI reasoning model (``o1``, ``o3-2025-04-16``,
    ``o4-mini``, ``gpt-5``, ``gpt-5-mini``, also after a ``provider/`` prefix)."""
    return bool(_REASONING_MODEL.fullmatch(model.rsplit("/", 1)[-1].lower()))


def affinity(conversation: ChatMessages) -> int:
    """A stable hash of what the comparisons of one question share: the system turn and the
    user turn up to the first response (RM-R1's single-turn layout; else the whole turn)."""
    parts = [str(m.get("content", "")) for m in conversation if m.get("role") == "system"]
    users = [str(m.get("content", "")) for m in conversation if m.get("role") == "user"]
    if users:
        parts.append(users[-1].split(RESPONSE_A, 1)[0])
    return zlib.crc32("\x00".join(parts).encode("utf-8", "surrogatepass"))


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _tokens(choice: Mapping[str, Any]) -> list[TokenChoice] | None:
    """A chat completion choice's tokens with their top alternatives (``logprobs.content``)."""
    content = (choice.get("logprobs") or {}).get("content") or []
    tokens = []
    try:
        for entry in content:
            top = {alt["token"]: float(alt["logprob"]) for alt in entry.get("top_logprobs") or []}
            written = float(entry.get("logprob", -math.inf))
            tokens.append(TokenChoice(str(entry["token"]), written, top))
    except (AttributeError, KeyError, TypeError, ValueError):
        return None  # not the OpenAI shape: no probability rather than a wrong one
    return tokens
