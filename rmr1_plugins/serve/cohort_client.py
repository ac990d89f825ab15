"""Clients of the cohort service (:mod:`rmr1_plugins.rewards.cohorts`) for reward workers that
each see part of a group: ``rmr1 serve``'s ``POST /cohort`` and the job's cohort actor.

Each request carries the rollout's ``id`` in its group (the same on every retry: never counted
twice) and the caller's decisive ``settings`` (applied alike, or refused naming the key). The
connection pool has no limit: a group is held until its last rollout comes. An unreachable or
overloaded server (503 with ``Retry-After``) is retried until the timeout, then the call raises;
a refused request (other 4xx but 413: settings, token or URL) raises :class:`CohortRefused`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from rmr1_plugins.errors import RMR1Error
from rmr1_plugins.rewards.metrics import sample_metrics
from rmr1_plugins.serve.cohort import CohortBodyError
from rmr1_plugins.serve.ray_actor import RayCohortClient

logger = logging.getLogger(__name__)
RETRY_DELAY_S = 0.5  # between retries when the server gives no Retry-After
PER_ROLLOUT = (413,)  # 4xx answers about one rollout (too large), not about the setup


class CohortRefused(RMR1Error, RuntimeError):
    """The cohort service refused a request (a setup error: settings, token, URL)."""


class CohortClient:
    """Posts rollouts to ``url``; one aiohttp session per event loop, made on first use."""

    def __init__(self, url: str, timeout_s: float, token: str | None = None) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session: Any = None

    async def ask(self, body: dict[str, Any]) -> dict[str, Any]:
        """The service's answer for one rollout; raises after ``timeout_s`` of failures."""
        import aiohttp

        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=0)  # no cap below the group barrier
            self._session = aiohttp.ClientSession(headers=self.headers, connector=connector)
        deadline = time.monotonic() + self.timeout_s
        while True:
            left = deadline - time.monotonic()
            delay = RETRY_DELAY_S
            try:
                limit = aiohttp.ClientTimeout(total=max(left, 0.001))
                async with self._session.post(self.url, json=body, timeout=limit) as response:
                    status, headers = response.status, response.headers
                    answer = await response.json(content_type=None)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as error:
                status, problem = 0, f"{type(error).__name__}: {error}"  # not reached, or not JSON
            else:
                if status == 200:
                    return answer
                reason = answer.get("error", answer) if isinstance(answer, dict) else answer
                problem = f"HTTP {status}: {reason}"
                if 400 <= status < 500 and status not in PER_ROLLOUT:
                    raise CohortRefused(f"cohort service {self.url} refused: {problem}")
                if status != 503:
                    raise ValueError(problem)  # this rollout's failure: retrying cannot help
                delay = retry_after(headers.get("Retry-After"), delay)
            if deadline - time.monotonic() <= delay:
                raise ConnectionError(f"cohort service {self.url}: {problem}")
            await asyncio.sleep(delay)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class RayCohorts(RayCohortClient):
    """The job's cohort actor (:mod:`rmr1_plugins.serve.ray_actor`) in place of
    ``rmr1 serve``. What ``/cohort`` answers with a 400 (other settings, a bad field),
    no Ray cluster, or an actor that cannot start (its judge fails to load) is a setup error:
    :class:`CohortRefused`."""

    async def ask(self, body: dict[str, Any]) -> dict[str, Any]:
        import ray
        from ray.exceptions import RayActorError

        if not ray.is_initialized():
            raise CohortRefused("cohort=ray needs a Ray cluster: the manager runs outside Ray")
        try:
            return await super().ask(body)
        except CohortBodyError as error:  # raised in the actor: Ray's copy keeps the cause
            why = getattr(error, "cause", error)
            raise CohortRefused(f"cohort actor {self.name} refused: {why}") from None
        except RayActorError as error:
            raise CohortRefused(f"cohort actor {self.name} cannot run: {error}") from None


def retry_after(value: str | None, default: float) -> float:
    """Seconds to wait from a ``Retry-After`` header (seconds form), else ``default``."""
    try:
        seconds = float(value) if value is not None else default
    except ValueError:
        return default
    return min(max(seconds, 0.0), 60.0) if seconds == seconds else default


def cohort_body(sample: Any, settings: dict[str, Any], on_split: str) -> dict[str, Any]:
    """The ``/cohort`` request for a sample: its key, id, group size, prompt, response and
    reference, the caller's decisive reward ``settings`` and what its group gets if it closes
    short (``on_split``: ``reference`` or ``drop``)."""
    names = ("key", "id", "size", "prompt", "response", "reference")
    body = {name: getattr(sample, name) for name in names}
    return {**body, "settings": settings, "on_split": on_split}


def cohort_result(answer: dict[str, Any]) -> dict[str, Any]:
    """``score`` and the metrics contract's keys, as the service logged them (a key it did not
    send keeps its never-judged value)."""
    logs = answer.get("logs") or {}
    if answer.get("error"):
        logger.warning("rmr1 reward manager: cohort service: %s", answer["error"])
    defaults = sample_metrics()
    return {
        "score": float(answer["reward"]),
        **{key: float(logs.get(key, value)) for key, value in defaults.items()},
    }
