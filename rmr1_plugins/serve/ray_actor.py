"""The cohort service as a named Ray actor in the trainer's own Ray cluster.

Several reward workers of one job (veRL's ``RewardLoopWorker`` actors) each call
:func:`cohort_actor`: the first creates one async actor holding a
:class:`~rmr1_plugins.rewards.cohorts.CohortService`, the others get the same one
(``get_if_exists``), so every rollout of a group meets in one place without a separate
``rmr1 serve``. :meth:`CohortActor.cohort` takes the fields of a ``/cohort`` body and returns the
``/cohort`` answer (:mod:`rmr1_plugins.serve.cohort`), the body's ``settings`` checked the same
way.

The actor's name is a digest of everything its service is built from (the judge, the ``reward:``
section, ``on_split``), so jobs or workers with other settings get another actor, never one
built for different settings. It lives in the job's Ray namespace, as long as the process that
created it (not detached: it ends with the job), and needs no CPU slot of its own
(``num_cpus=0``); the judge is built in it. Ray is imported lazily; no trainer is imported.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from rmr1_plugins.rewards.cohorts import CohortService
from rmr1_plugins.scorer_config import LazyScorer
from rmr1_plugins.serve.cohort import cohort_answer, own_settings, parse_member
from rmr1_plugins.settings import RewardSettings

PREFIX = "rmr1-cohorts-"
MAX_PENDING = 1 << 30  # a whole step waits here; reward.service.max_pending_bytes bounds it
MAX_GROUP_SIZE = 1 << 16
IN_PROCESS_ENGINES = ("hf", "vllm")  # judges that load a model in the actor's process


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

    async def cohort(self, body: dict[str, Any]) -> dict[str, Any]:
        """The ``/cohort`` answer for one member; raises
        :class:`~rmr1_plugins.serve.cohort.CohortBodyError` (a bad field or other settings) or
        :class:`~rmr1_plugins.rewards.cohorts.Overloaded`, holding nothing."""
        service = self.service()
        member = parse_member(body, own_settings(service))
        return cohort_answer(await service.reward(member))

    def stats(self) -> dict[str, int]:
        """The service's counts (as ``/stats``' cohorts section) and what it holds now."""
        service = self.service()
        return {**service.stats, "held": service.pending}

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
    """Sends ``/cohort`` bodies to the job's cohort actor (made on first use).

    An actor that died (its creator ended, or it crashed) is made again once and the member
    sent again: its held members' callers do the same, with the same ids, so their groups
    fill again. Other errors are raised as the actor raised them."""

    def __init__(self, settings: RewardSettings, on_split: str, max_concurrency: int) -> None:
        check_backend(settings)  # at start-up, not at the first rollout
        self.settings = settings
        self.on_split = on_split
        self.max_concurrency = max_concurrency
        self.name = actor_name(settings, on_split)
        self._actor: Any = None

    def actor(self) -> Any:
        if self._actor is None:
            self._actor = cohort_actor(self.settings, self.on_split, self.max_concurrency)
        return self._actor

    async def ask(self, body: dict[str, Any]) -> dict[str, Any]:
        """The actor's ``/cohort`` answer for ``body``."""
        from ray.exceptions import RayActorError

        try:
            return await self.actor().cohort.remote(body)
        except RayActorError:
            self._actor = None  # dead: make it again (get_if_exists), and ask once more
            return await self.actor().cohort.remote(body)

    async def aclose(self) -> None:
        """Nothing to close here: the actor ends with its creator."""
