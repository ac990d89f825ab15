"""The ``rmr1`` manager's client of ``rmr1 serve``'s cohort endpoint (``POST /cohort``).

With ``reward.num_workers > 1`` veRL sends each rollout to a random reward worker, so no worker
sees a whole group. ``+reward.rmr1.cohort_url=http://HOST:PORT/cohort`` makes every worker send
its rollouts to one ``rmr1 serve``, which holds them until their group (the ``uid``) is whole and
judges it (:mod:`rmr1_plugins.rewards.cohorts`). The answer's logs (the metrics contract) become the
manager's usual extra info: ``rmr1_split`` is 1.0 when the rollout was not judged in its whole
group. An unreachable or overloaded server is retried (503, connection errors) until
``cohort_timeout``, then the rollout gets the fallback reward with ``rmr1_error`` 1.0 and a
logged warning saying why; it never raises.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from rmr1_plugins.rewards.metrics import sample_metrics

logger = logging.getLogger(__name__)
RETRY_DELAY_S = 0.5


class CohortClient:
    """Posts rollouts to ``url``; one aiohttp session per event loop, made on first use."""

    def __init__(self, url: str, timeout: float, token: str | None = None) -> None:
        self.url = url
        self.timeout = timeout
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session: Any = None

    async def ask(self, body: dict[str, Any]) -> dict[str, Any]:
        """The service's answer for one rollout; raises after ``timeout`` s of failures."""
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self.headers)
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            try:
                limit = aiohttp.ClientTimeout(total=max(left, 0.001))
                async with self._session.post(self.url, json=body, timeout=limit) as response:
                    answer = await response.json(content_type=None)
                    if response.status == 200:
                        return answer
                    problem = f"HTTP {response.status}: {answer.get('error', answer)}"
                    if response.status != 503:
                        raise ValueError(problem)  # a refused body: retrying cannot help
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
                problem = f"{type(error).__name__}: {error}"
            if deadline - time.monotonic() <= RETRY_DELAY_S:
                raise ConnectionError(f"cohort service {self.url}: {problem}")
            await asyncio.sleep(RETRY_DELAY_S)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def cohort_body(sample: Any) -> dict[str, Any]:
    """The ``/cohort`` request for a manager's sample (key, size, prompt, response, reference)."""
    names = ("key", "size", "prompt", "response", "reference")
    return {name: getattr(sample, name) for name in names}


def cohort_result(answer: dict[str, Any]) -> dict[str, Any]:
    """The manager's extra info: ``score`` and the metrics contract's keys, as the service
    logged them (a key it did not send keeps its never-judged value)."""
    logs = answer.get("logs") or {}
    if answer.get("error"):
        logger.warning("rmr1 reward manager: cohort service: %s", answer["error"])
    defaults = sample_metrics()
    return {
        "score": float(answer["reward"]),
        **{key: float(logs.get(key, value)) for key, value in defaults.items()},
    }
