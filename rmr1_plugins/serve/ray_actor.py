"""The cohort service as a named Ray actor in the trainer's own Ray cluster.

Several reward workers of one job (veRL's ``RewardLoopWorker`` actors) each call
:func:`cohort_actor`: the first creates one async actor holding a
:class:`~rmr1_plugins.rewards.cohorts.CohortService`, the others get the same one
(``get_if_exists``), so every rollout of a group meets in one place without a separate
``rmr1 serve``. :meth:`CohortActor.cohort` takes the fields of a ``/cohort`` body and returns the
``/cohort`` answer (:mod:`rmr1_plugins.serve.cohort`), the body's ``settings`` checked the same
way; :meth:`CohortActor.join` takes a :class:`~rmr1_plugins.rewards.cohort_table.Member` built
by the caller (OpenRLHF's reward file).

``reward.service.max_pending_bytes`` bounds what **one worker** holds: the actor holds up to
that many bytes for each worker that has sent it a member (each :class:`RayCohortClient` is one
worker), so
a step split over more workers never hits a bound sized for one. A member that finds the actor
full (:class:`~rmr1_plugins.rewards.cohort_table.Overloaded`, nothing held) is sent again by the
client with doubling backoff, like a 503 from ``rmr1 serve``, until its ``timeout_s``.

The actor's name is a digest of everything its service is built from (the judge, the ``reward:``
section, ``on_split``), so jobs or workers with other settings get another actor, never one
built for different settings. It lives in the job's Ray namespace, as long as the process that
created it (not detached: it ends with the job), and needs no CPU slot of its own
(``num_cpus=0``); the judge is built in it. Ray is imported lazily; no trainer is imported.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from rmr1_plugins.rewards.cohort_table import Member, Overloaded
from rmr1_plugins.rewards.cohorts import CohortService
from rmr1_plugins.rewards.inputs import Sample
from rmr1_plugins.rewards.samples import SampleReward, fallback
from rmr1_plugins.scorer_config import LazyScorer
from rmr1_plugins.serve.cohort import cohort_answer, member_of, own_settings, parse_member
from rmr1_plugins.settings import RewardSettings

logger = logging.getLogger(__name__)
PREFIX = "rmr1-cohorts-"
MAX_PENDING = 1 << 30  # a whole step waits here; reward.service.max_pending_bytes bounds it
MAX_GROUP_SIZE = 1 << 16
IN_PROCESS_ENGINES = ("hf", "vllm")  # judges that load a model in the actor's process
RETRY_DELAY_S = 0.5  # first wait after Overloaded; doubles up to MAX_RETRY_DELAY_S
MAX_RETRY_DELAY_S = 8.0


def actor_name(settings: RewardSettings, on_split: str) -> str:
    """The actor's name: ``rmr1-cohorts-`` and a digest of ``settings`` and ``on_split``."""
    built_from = {"settings": settings.model_dump(mode="json"), "on_split": on_split}
    digest = hashlib.sha256(json.dumps(built_from, sort_keys=True).encode()).hexdigest()
    return PREFIX + digest[:20]


class CohortActor:
    """The actor (wrapped by ``ray.remote`` in :func:`cohort_actor`): one cohort service."""

    def __init__(self, settings: RewardSettings, on_split: str) -> None:
        self.settings = settings
        self.on_split = on_split
        self.scorer = LazyScorer(settings.scorer).get()  # a judge that cannot load fails here
        self.per_worker = settings.reward.service.max_pending_bytes
        self.workers: set[str] = set()  # the clients that have sent a member
        self._service: CohortService | None = None

    def service(self) -> CohortService:
        """The cohort service, made on first use in the actor's event loop."""
        if self._service is None:
            self._service = CohortService(
                self.scorer,
                self.settings.reward,
                max_pending=MAX_PENDING,
                max_group_size=MAX_GROUP_SIZE,
                on_split=self.on_split,  # type: ignore[arg-type]
                deadline="close",  # the judge's timeout_s counts from a group's close
            )
        return self._service

    async def cohort(self, body: dict[str, Any], worker: str | None = None) -> dict[str, Any]:
        """The ``/cohort`` answer for one member sent by ``worker``; raises
        :class:`~rmr1_plugins.serve.cohort.CohortBodyError` (a bad field or other settings) or
        :class:`~rmr1_plugins.rewards.cohort_table.Overloaded`, holding nothing."""
        service = self.service()
        member = parse_member(body, own_settings(service))
        return await self.join(member, worker)

    async def join(self, member: Member, worker: str | None = None) -> dict[str, Any]:
        """The ``/cohort`` answer for ``member`` (built by a caller with this actor's settings:
        the actor's name says so); raises as :meth:`cohort`."""
        service = self.service()
        if worker is not None and worker not in self.workers:
            self.workers.add(worker)  # one more worker's share of the byte bound
            service.table.max_bytes = self.per_worker * len(self.workers)
        return cohort_answer(await service.reward(member))

    def stats(self) -> dict[str, int]:
        """The service's counts (as ``/stats``' cohorts section) and what it holds now."""
        service = self.service()
        held_bytes = service.table.held_bytes
        return {
            **service.stats,
            "held": service.pending,
            "held_bytes": held_bytes,
            "workers": len(self.workers),
            "max_pending_bytes": service.table.max_bytes,
        }

    async def aclose(self) -> None:
        if self._service is not None:
            await self._service.aclose()


def check_backend(settings: RewardSettings) -> None:
    """Refuse (ValueError) a judge that runs in process (``hf``, ``vllm``): the actor has no GPU
    of its own, so such a judge would load onto the trainer's GPUs."""
    backend = settings.scorer.backend.name
    if backend in IN_PROCESS_ENGINES:
        raise ValueError(
            f"the cohort actor builds its judge in its own process with no GPU reserved; backend "
            f"{backend!r} would load onto the trainer's GPUs: serve the judge over HTTP "
            "(backend openai, e.g. vllm serve, or veRL's reward model router), or use cohort_url "
            "with an rmr1 serve on its own GPUs"
        )


def cohort_actor(
    settings: RewardSettings,
    on_split: str,
    max_concurrency: int,
    namespace: str | None = None,
) -> Any:
    """The handle of the job's cohort actor for ``settings``, created if none exists.

    ``max_concurrency`` must hold every member that can wait at once (a whole step's rollouts);
    it is set by whoever creates the actor. ``namespace`` None is the current job's."""
    check_backend(settings)
    import ray

    actor = ray.remote(CohortActor).options(
        name=actor_name(settings, on_split),
        namespace=namespace,
        get_if_exists=True,
        max_concurrency=max_concurrency,
        num_cpus=0,
    )
    return actor.remote(settings, on_split)


class RayCohortClient:
    """One worker's way to the job's cohort actor (made on first use).

    A member the actor refuses as full (:class:`~rmr1_plugins.rewards.cohort_table.Overloaded`) is
    sent again after 0.5 s, doubling up to 8 s, until ``timeout_s`` seconds after the first try;
    then Overloaded is raised. An actor that died (its creator ended, or it crashed) is made
    again once and the member sent again: its held members' callers do the same, with the same
    ids, so their groups fill again. Other errors are raised as the actor raised them."""

    def __init__(
        self,
        settings: RewardSettings,
        on_split: str,
        max_concurrency: int,
        timeout_s: float = 600.0,
    ) -> None:
        check_backend(settings)  # at start-up, not at the first rollout
        self.settings = settings
        self.on_split = on_split
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.name = actor_name(settings, on_split)
        self.worker = uuid.uuid4().hex  # this worker's share of the actor's byte bound
        self._actor: Any = None
        self._lock = threading.Lock()  # one handle, even from many threads (OpenRLHF's)

    def actor(self) -> Any:
        """The actor's handle, kept: Ray ends a non-detached actor once its creator's handle is
        gone, whoever else holds one."""
        with self._lock:
            if self._actor is None:
                self._actor = cohort_actor(self.settings, self.on_split, self.max_concurrency)
            return self._actor

    async def ask(self, body: dict[str, Any]) -> dict[str, Any]:
        """The actor's ``/cohort`` answer for ``body``."""
        return await self._retried("cohort", body)

    async def join(self, member: Member) -> dict[str, Any]:
        """The actor's ``/cohort`` answer for ``member``."""
        return await self._retried("join", member)

    async def _retried(self, method: str, arg: Any) -> dict[str, Any]:
        """``method(arg)`` on the actor, sent again while it is full, until ``timeout_s``."""
        deadline = time.monotonic() + self.timeout_s
        delay = RETRY_DELAY_S
        while True:
            try:
                return await self._send(method, arg)
            except Overloaded as full:  # raised in the actor: nothing of it was held
                why = getattr(full, "cause", full)
                if deadline - time.monotonic() <= delay:
                    raise Overloaded(
                        f"cohort actor {self.name} still full after {self.timeout_s:g} s: {why}"
                    ) from None
            await asyncio.sleep(delay)
            delay = min(2 * delay, MAX_RETRY_DELAY_S)

    async def _send(self, method: str, arg: Any) -> dict[str, Any]:
        from ray.exceptions import RayActorError

        actor = self.actor()
        try:
            return await getattr(actor, method).remote(arg, self.worker)
        except RayActorError:
            with self._lock:  # dead: make it again (get_if_exists), and ask once more
                if self._actor is actor:  # not a new one another thread made meanwhile
                    self._actor = None
            return await getattr(self.actor(), method).remote(arg, self.worker)

    async def aclose(self) -> None:
        """Nothing to close here: the actor ends with its creator."""


class RayCohortRewards:
    """Whole-group rewards for callers on threads (OpenRLHF's reward file): each sample waits
    in the job's cohort actor, through one event loop for every waiting sample's Ray call."""

    def __init__(self, client: RayCohortClient) -> None:
        self.config = client.settings.reward
        self.client = client
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="rmr1-cohorts", daemon=True).start()

    def rewards(self, samples: Sequence[Sample]) -> list[SampleReward]:
        """One reward per sample, each from its whole group; never raises."""
        return [self._one(sample) for sample in samples]

    def _one(self, sample: Sample) -> SampleReward:
        try:
            member: Member = member_of(sample, self.config)
        except Exception as error:  # SampleError, or an unforeseen input shape
            return fallback(self.config, "bad_input", str(error))
        try:
            answer = asyncio.run_coroutine_threadsafe(self.client.join(member), self._loop).result()
        except Exception as error:  # full past its timeout, or the actor cannot run
            logger.error("rmr1: cohort actor %s: %s", self.client.name, error)
            return fallback(self.config, "error", f"cohort actor: {error}")
        if answer.get("error"):
            logger.warning("rmr1: cohort actor: %s", answer["error"])
        reward = float(answer["reward"])
        return SampleReward(reward, self.config.to_score(reward), dict(answer["logs"]))

    def close(self) -> None:
        """Stop the loop; the cohort actor ends with the process that created it."""
        self._loop.call_soon_threadsafe(self._loop.stop)
