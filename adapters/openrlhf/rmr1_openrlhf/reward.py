"""OpenRLHF's ``reward_func(queries, prompts, labels)``, backed by an RM-R1 judge.

OpenRLHF 0.11.2 loads the reward file in every rollout actor and calls ``reward_func`` once per
generated sample (lists of length 1), from many threads at once, with:

- ``queries``: prompt + response, decoded with special tokens;
- ``prompts``: the formatted prompt;
- ``labels``: the ``--data.label_key`` column: the reference answer, or
  ``{"reference": ..., "question": ...}``.

Each response is judged against its reference (see :mod:`rmr1_plugins.rewards.samples`). The
first call builds the judge, once per process, from ``RMR1_CONFIG`` (a YAML file with the scorer
keys and a ``reward:`` section) and ``RMR1_*`` variables; later calls share it, and samples from
concurrent calls are batched into one judge call. OpenRLHF passes no arguments and Ray does not
forward environment variables: set them with ``ray job submit --runtime-env-json``.

Whole-group rewards (an in-group ``strategy`` with ``group.size`` over 1) need OpenRLHF on Ray,
where the reward file runs in each ``RolloutRayActor``: every rollout goes to the job's cohort
actor (:mod:`rmr1_plugins.serve.ray_actor`, named from the settings, so every rollout
actor with the same configuration meets in one), which holds it until its group (the formatted
prompt, ``group.size`` rollouts) is whole, as ``rmr1 serve``'s ``/get_reward`` does; a group
short at ``group.timeout_s`` is judged with what arrived (``partial``). OpenRLHF runs the file in
the rollout actor's default thread pool (min(32, CPUs + 4) threads), where waiting rollouts
would hold every thread, so when the file is loaded (in the actor's event loop) with such a
configuration the loop's default executor is replaced by one of :data:`HELD_THREADS` threads
(made only when used). Outside Ray in-group rewards are refused: every sample gets the
fallback and the error points to ``rmr1 serve``.

``reward_func`` never raises and never returns ``None``. A sample that gets no verdict (bad
label, an unparseable judgment with ``on_unparsed: exclude``, judge error, timeout, a
configuration that does not load) gets the fallback reward, with ``rmr1_fallback=1`` and its
kind's flag in ``extra_logs`` (the metrics contract, :mod:`rmr1_plugins.rewards.metrics`: the
same keys for every sample, set-up failures included) and the reason in a logged warning.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rmr1_plugins.errors import RMR1Error
from rmr1_plugins.rewards.cohorts import groups_samples
from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.rewards.inputs import Sample
from rmr1_plugins.rewards.metrics import columns
from rmr1_plugins.rewards.samples import SampleReward, fallback
from rmr1_plugins.rewards.service import BackgroundRewardService
from rmr1_plugins.serve.ray_actor import RayCohortClient, RayCohortRewards
from rmr1_plugins.settings import CONFIG_ENV, load_reward_settings

logger = logging.getLogger("rmr1_openrlhf")
HELD_THREADS = 8192  # rollouts one rollout actor may hold in the cohort actor at once
ACTOR_CONCURRENCY = 1 << 16  # members the cohort actor holds at once, all rollout actors
COHORT_TIMEOUT_S = 600.0  # how long a rollout retries a full cohort actor

_lock = threading.Lock()
_runtime: BackgroundRewardService | RayCohortRewards | None = None
_last_setup_log = -float("inf")


class SetupError(RMR1Error, RuntimeError):
    """The judge could not be set up from a configuration that loaded: ``reward`` is its
    ``reward:`` section, so the fallback is on the configured scale."""

    def __init__(self, message: str, reward: RewardConfig) -> None:
        super().__init__(message)
        self.reward = reward


def _on_ray() -> bool:
    """Whether this process is connected to a Ray cluster (OpenRLHF's rollout actors are; a
    process that never imported ray is not, and does not import it here)."""
    ray = sys.modules.get("ray")
    return ray is not None and bool(ray.is_initialized())


def hold_threads() -> None:
    """Where OpenRLHF loads the reward file (``RolloutRayActor.__init__``, in the actor's event
    loop): with whole-group rewards on Ray, give the loop's default executor, which runs
    ``reward_func``, a thread for every rollout that may wait for its group."""
    try:
        loop = asyncio.get_running_loop()
        settings = load_reward_settings()
    except Exception:  # no loop here, or a configuration the first call reports
        return
    if groups_samples(settings.reward) and _on_ray():
        executor = ThreadPoolExecutor(HELD_THREADS, thread_name_prefix="rmr1-reward")
        loop.set_default_executor(executor)


def get_runtime() -> BackgroundRewardService | RayCohortRewards:
    """This process's judge (or, for whole groups on Ray, its way to the cohort actor), built
    on first use; raises if the configuration is invalid."""
    global _runtime
    with _lock:
        if _runtime is None:
            settings = load_reward_settings()  # $RMR1_CONFIG and the RMR1_* variables
            if groups_samples(settings.reward):
                if not _on_ray():
                    raise SetupError(
                        f"reward.strategy {settings.reward.strategy!r} with reward.group.size "
                        f"{settings.reward.group.size} asks for in-group rewards, which the "
                        "reward file gives only inside OpenRLHF's Ray rollout actors; serve the "
                        "judge with `rmr1 serve` and pass --reward.remote_url "
                        "http://HOST:PORT/get_reward (docs/trainers/openrlhf.md), or unset "
                        "reward.group.size for reference rewards",
                        settings.reward,
                    )
                try:
                    client = RayCohortClient(
                        settings, "partial", ACTOR_CONCURRENCY, COHORT_TIMEOUT_S
                    )
                    _runtime = RayCohortRewards(client)
                except Exception as error:  # a judge the cohort actor cannot run (hf, vllm)
                    raise SetupError(str(error), settings.reward) from error
                return _runtime
            logger.info(
                "rmr1: loading judge %s (%s backend) for OpenRLHF rewards",
                settings.scorer.backend.model,
                settings.scorer.backend.name,
            )
            try:
                scorer = settings.scorer.build_scorer()
            except Exception as error:
                raise SetupError(f"{type(error).__name__}: {error}", settings.reward) from error
            _runtime = BackgroundRewardService(scorer, settings.reward)
            atexit.register(_runtime.close)
        return _runtime


def reset_runtime() -> None:
    """Close this process's judge; the next call builds it again from the environment (and
    logs its set-up failure at once, if it fails)."""
    global _runtime, _last_setup_log
    _last_setup_log = -float("inf")
    with _lock:
        if _runtime is not None:
            _runtime.close()
            atexit.unregister(_runtime.close)
            _runtime = None


def reward_func(
    queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any] | None = None, **_: Any
) -> dict[str, Any]:
    """``{"rewards", "scores", "extra_logs"}`` with one entry per query; never raises."""
    samples = _samples(queries, prompts, labels)
    try:
        results = get_runtime().rewards(samples)
    except Exception as error:
        results = _setup_failure(error, len(samples))
    return _to_openrlhf(results)


def _samples(queries: Any, prompts: Any, labels: Any) -> list[Sample]:
    """One sample per query; missing prompts or labels become bad inputs, never an error."""
    queries, prompts, labels = _as_list(queries), _as_list(prompts), _as_list(labels)
    return [
        Sample(
            query,
            prompts[i] if i < len(prompts) else None,  # type: ignore[arg-type]
            labels[i] if i < len(labels) else "",
        )
        for i, query in enumerate(queries or [None])
    ]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _setup_failure(error: Exception, count: int) -> list[SampleReward]:
    global _last_setup_log
    cause = error if isinstance(error, SetupError) else f"{type(error).__name__}: {error}"
    message = f"the judge could not be set up: {cause}"
    now = time.monotonic()
    if now - _last_setup_log > 30:
        _last_setup_log = now
        logger.error("rmr1: %s (check %s and the RMR1_* variables)", message, CONFIG_ENV)
    config = error.reward if isinstance(error, SetupError) else RewardConfig()
    return [fallback(config, "error", message) for _ in range(max(count, 1))]


def _to_openrlhf(results: list[SampleReward]) -> dict[str, Any]:
    lists = {
        "rewards": [r.reward for r in results],
        "scores": [r.score for r in results],
        **columns([r.extra_logs for r in results]),  # the metrics contract: the same keys always
    }
    try:
        import torch

        tensors = {key: torch.tensor(values, dtype=torch.float32) for key, values in lists.items()}
    except ImportError:  # OpenRLHF always has torch; plain lists work too
        tensors = dict(lists)
    return {
        "rewards": tensors.pop("rewards"),
        "scores": tensors.pop("scores"),
        "extra_logs": tensors,
    }
