"""How many rollouts one veRL reward worker can hold: Ray's concurrency cap, set from the step.

Each rollout is one ``RewardLoopWorker.compute_score`` call, and the ``rmr1`` manager holds it
until its group is answered. veRL 0.9.1 creates the workers with Ray's default for async actors,
1,000 concurrent calls, and has no setting for it: the 1,001st rollout of a worker would queue in
Ray while the groups it completes wait for it, and split at ``group.timeout_s``.

:func:`install` (run when the manager module loads, so in the driver on ``import verl``) makes
``RewardLoopManager`` create its workers with ``max_concurrency`` =
``+reward.rmr1.max_concurrency``, by default twice a training step's rollouts (prompts ×
rollouts), at least Ray's 1,000; only when the reward manager is ``rmr1``. :func:`check` refuses
to start (in the driver, and again in each worker's manager) when the cap is below the step's
rollouts per worker, naming the setting.
"""

from __future__ import annotations

import logging
import math
from typing import Any

RAY_DEFAULT = 1000  # ray._common.ray_constants.DEFAULT_MAX_CONCURRENCY_ASYNC
MARK = "_max_concurrency"  # the cap the driver gave the workers, passed in their config
HEADROOM = 1.25  # random routing gives workers uneven shares of a step


def step_rollouts(config: Any) -> int | None:
    """Rollouts in a training step (``data.train_batch_size × rollout.n``), if known."""
    try:
        prompts = int(config.data.train_batch_size)
        return prompts * int(config.actor_rollout_ref.rollout.n)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def concurrency(config: Any, own: dict[str, Any]) -> int:
    """The workers' cap: ``max_concurrency`` if set, else twice the step's rollouts (≥ 1,000)."""
    if own.get("max_concurrency") is not None:
        return int(own["max_concurrency"])
    return max(RAY_DEFAULT, 2 * (step_rollouts(config) or 0))


def check(config: Any, own: dict[str, Any], workers: int, in_ray: bool) -> None:
    """Refuse a worker whose cap cannot hold its share of a step's rollouts."""
    rollouts = step_rollouts(config)
    if not in_ray or rollouts is None:
        return
    cap = int(own.get(MARK) or RAY_DEFAULT)  # no mark: the driver did not run install()
    needed = math.ceil(rollouts / max(workers, 1) * (HEADROOM if workers > 1 else 1))
    if cap < needed:
        how = (
            "set +reward.rmr1.max_concurrency"
            if own.get(MARK)
            else "load the rmr1_verl plugin in the driver (the verl.plugins entry point, or "
            "VERL_USE_EXTERNAL_MODULES=rmr1_verl.plugin), which sets it"
        )
        raise ValueError(
            f"rmr1 reward manager: a step has {rollouts} rollouts (data.train_batch_size x "
            f"rollout.n) over reward.num_workers={workers}, so a worker may hold {needed} "
            f"waiting rollouts, but Ray runs at most {cap} calls at once in a reward worker "
            f"and groups beyond that would split: {how} to at least {needed}"
        )


def install() -> None:
    """Make veRL's ``RewardLoopManager`` give ``rmr1`` workers the cap (once per process)."""
    from verl.experimental.reward_loop import reward_loop

    manager_cls = reward_loop.RewardLoopManager
    original = getattr(manager_cls, "_init_reward_loop_workers", None)
    if original is None:  # another veRL: the workers' check (in the manager) still runs
        logging.getLogger(__name__).warning(
            "rmr1_verl: this veRL's RewardLoopManager has no _init_reward_loop_workers; reward "
            "workers keep Ray's default of %d concurrent calls",
            RAY_DEFAULT,
        )
        return
    if getattr(original, "_rmr1", False):
        return

    def _init_reward_loop_workers(self: Any) -> None:
        from rmr1_verl.manager import RMR1RewardManager, _plain

        manager = getattr(self, "reward_manager_cls", None)  # veRL 0.9.1 sets it first
        if isinstance(manager, type) and issubclass(manager, RMR1RewardManager):
            import ray
            from omegaconf import OmegaConf

            own = _plain(self.config.reward.get("rmr1")) or {}
            cap = concurrency(self.config, own)
            check(self.config, {**own, MARK: cap}, int(self.config.reward.num_workers), True)
            OmegaConf.update(self.config, f"reward.rmr1.{MARK}", cap, force_add=True)
            self.reward_loop_workers_class = ray.remote(max_concurrency=cap)(
                reward_loop.RewardLoopWorker
            )
        original(self)

    _init_reward_loop_workers._rmr1 = True  # type: ignore[attr-defined]
    manager_cls._init_reward_loop_workers = _init_reward_loop_workers
