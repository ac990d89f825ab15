"""The ``rmr1`` manager's client of ``rmr1 serve``'s cohort endpoint (``POST /cohort``).

With ``reward.num_workers > 1`` veRL sends each rollout to a random reward worker, so no worker
sees a whole group. ``+reward.rmr1.cohort_url=http://HOST:PORT/cohort`` makes every worker send
its rollouts to one ``rmr1 serve``, which holds them until their group (the ``uid``) is whole and
judges it (:mod:`rmr1_plugins.rewards.cohorts`). The answer becomes the manager's usual extra info;
``rmr1_fallback`` is 1.0 whenever the rollout was not judged in its whole group. An unreachable
or overloaded server is retried (503, connection errors) until ``cohort_timeout``, then the
rollout gets the fallback reward with ``rmr1_error`` saying why; it never raises.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

from rmr1_plugins.rewards.health import Tally

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
    """The manager's extra info (the same keys as ``rmr1_verl.reward.result``)."""
    logs = answer.get("logs") or {}
    win = answer.get("win")
    return {
        "score": float(answer["reward"]),
        "rmr1_win": math.nan if win is None else float(win),
        "rmr1_unparsed": float(logs.get("rmr1_unparsed_comparisons", 0.0)),
        "rmr1_judgments": float(logs.get("rmr1_judgments", 0.0)),
        "rmr1_fallback": float(answer.get("kind") is not None),
        "rmr1_error": answer.get("error") or "",
        **{key: float(logs.get(key, value)) for key, value in Tally().sample_logs().items()},
    }
