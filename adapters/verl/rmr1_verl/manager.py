"""The ``rmr1`` reward manager: a prompt's rollouts are judged together, pairwise.

veRL's reward loop calls ``run_single`` once per rollout. The manager holds each rollout until
its group is complete — the rollouts sharing ``non_tensor_batch["uid"]``, as many as the row's
``__rollout_n__`` when present, else ``val_kwargs.n`` for rows whose ``extra_info["split"]`` is
``test``/``val``/``validation``, else ``actor_rollout_ref.rollout.n`` (veRL does not tell the
reward worker which rows are validation: set ``val_kwargs.n`` to ``rollout.n`` for whole
validation groups) — then judges the group with the configured strategy and answers every
waiting rollout. The rollouts wait in the core's cohort service
(:class:`~rmr1_plugins.rewards.cohorts.CohortService`) in this ``RewardLoopWorker`` process; its
judge calls batch the pairs of every group ready at once. After ``group.timeout_s`` seconds an
incomplete group is judged against its reference answer (``group.on_split: reference``) or gets the
``fallback`` reward (``drop``); its rollouts that arrive later are answered at once the same way.
A late rollout never fails a step: ``group.on_split: error`` (the default, as in every trainer) is
logged as an error and judged as ``reference``. A group's judgment
still unanswered ``reward.service.timeout_s`` after the group closed (complete, or at its
``group.timeout_s``) gets the fallback (``timeout``).

With ``reward.num_workers > 1`` no worker sees a whole group; ``+reward.rmr1.cohort=ray`` then
sends every rollout to one cohort actor in the trainer's Ray cluster
(:mod:`rmr1_plugins.serve.ray_actor`), or ``+reward.rmr1.cohort_url`` to one ``rmr1 serve``
cohort endpoint (:mod:`rmr1_plugins.serve.cohort_client`), each rollout with its ``on_split``;
without either an in-group strategy refuses to start. Ray's cap on a worker's concurrent calls
is set from the step and checked at start-up (:mod:`rmr1_verl.workers`).

Settings come from the rmr1 YAML (``config``, else ``$RMR1_CONFIG``) and ``+reward.rmr1.<key>``
overrides: any ``reward:`` option (a section's key dotted: ``group.timeout_s``) plus ``config``,
``model``, ``order``, ``question_key``, ``cohort``, ``cohort_url``, ``cohort_timeout_s``,
``token`` and ``max_concurrency``.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from verl import DataProto
from verl.experimental.reward_loop.reward_manager import register
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

from rmr1_plugins.rewards.cohort_table import Member, Overloaded
from rmr1_plugins.rewards.cohorts import CohortReward, CohortService
from rmr1_plugins.rewards.groups import SplitRule
from rmr1_plugins.rewards.metrics import StepSummary
from rmr1_plugins.scorer_config import shared_scorer
from rmr1_plugins.serve.cohort_client import (
    CohortClient,
    CohortRefused,
    RayCohorts,
    cohort_body,
    cohort_result,
)
from rmr1_plugins.settings import decisive_settings
from rmr1_verl import workers as ray_workers
from rmr1_verl.reward import reference_of, result, settings

logger = logging.getLogger(__name__)
VALIDATION_SPLITS = ("test", "val", "validation")
STEP_DEFAULT = 1024  # rollouts per summary line when the step's size is unknown


@dataclass
class Sample:
    key: str
    prompt: Any
    response: str
    reference: str | None
    size: int
    # the rollout inside its group, the same on every retry: "<uid>:<session_id>", else drawn
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    has_uid: bool = True


class RMR1RewardManager(RewardManagerBase):
    """Scores each prompt's rollouts together with an RM-R1 judge (see the module docstring)."""

    def __init__(
        self,
        config: Any,
        tokenizer: Any,
        compute_score: Any = None,
        reward_router_address: str | None = None,
        reward_model_tokenizer: Any = None,
        **_: Any,
    ) -> None:
        super().__init__(config, tokenizer, compute_score)
        raw = _plain(config.reward.get("rmr1")) or {}
        self.reward_config, own = settings(raw, reward_router_address, reward_model_tokenizer)
        self.options = self.reward_config.reward
        self.strategy = self.options.build_strategy()
        self.on_split = self.options.group.on_split
        self.group_timeout_s = self.options.group.timeout_s
        rollout = config.actor_rollout_ref.rollout
        self.group_size = int(self.options.group.size or rollout.n)
        self.val_group_size = int(_get(rollout, "val_kwargs", "n", default=1))
        self._local: CohortService | None = None  # the in-process groups, built on first use
        self._reported = ""  # the last split group logged (its rollouts are answered together)
        workers = int(_get(config, "reward", "num_workers", default=1))
        self.cohorts: CohortClient | RayCohorts | None
        if own.get("cohort") is not None:
            actor = self._cohort_actor(own, workers, config)  # checks the setting
            self.cohorts = None if self.strategy.needs_reference else actor
        else:
            self.cohorts = _cohort_client(own, workers, config, self.strategy.needs_reference)
        if not self.strategy.needs_reference:  # else no rollout waits for its group
            ray_workers.check(config, own, workers, _in_ray_actor())
        self.decisive = decisive_settings(self.reward_config)
        rollouts = ray_workers.step_rollouts(config)
        every = max(1, rollouts // workers) if rollouts else STEP_DEFAULT
        # veRL 0.9.1 reduces no reward extra info into its training metrics: this log line is
        # where split groups and fallbacks show, one per step's share of rollouts
        # (data.train_batch_size x rollout.n / reward.num_workers)
        self.summary = StepSummary(every, logger, "rmr1 reward manager")

    async def run_single(self, data: DataProto) -> dict:
        try:
            sample = self._sample(data[-1:][0])
        except Exception as error:  # a malformed row: fallback, never a crash in the trainer
            logger.warning("rmr1 reward manager: cannot read a rollout (%s)", error)
            why = f"unreadable rollout: {error}"
            info = result(None, 0, self.options, kind="bad_input", error=why)
            return {"reward_score": info["score"], "reward_extra_info": info}
        if self.cohorts is not None and not (self.strategy.needs_reference or sample.size <= 1):
            info = await self._ask_cohort(sample)
        else:
            info = await self._join(sample)
        if not self.strategy.needs_reference:
            self.summary.add(info, sample.size)
        return {"reward_score": info["score"], "reward_extra_info": info}

    async def _ask_cohort(self, sample: Sample) -> dict[str, Any]:
        assert self.cohorts is not None
        try:
            body = cohort_body(sample, self.decisive, self._split_rule())
            return cohort_result(await self.cohorts.ask(body))
        except CohortRefused as error:  # a setup error, the same for every rollout: stop
            logger.error("rmr1 reward manager: %s", error)
            raise
        except Exception as error:  # one rollout's failure: the fallback, saying why
            return result(None, 0, self.options, kind="error", error=f"reward manager: {error}")

    def _sample(self, item: Any) -> Sample:
        batch, extra = item.batch, item.non_tensor_batch
        response_ids = batch["responses"]
        valid = int(batch["attention_mask"][-response_ids.shape[-1] :].sum())
        response = self.tokenizer.decode(response_ids[:valid], skip_special_tokens=True)
        extra_info = extra.get("extra_info") or {}
        prompt = extra.get("raw_prompt")
        prompt = extra_info.get("question") if prompt is None else prompt
        if prompt is None:
            raise ValueError("the rollout has neither raw_prompt nor extra_info['question']")
        prompt = prompt if isinstance(prompt, str) else [dict(m) for m in list(prompt)]
        reward_model = extra.get("reward_model") or {}
        reference = reference_of(
            reward_model.get("ground_truth"), extra_info, self.options.inputs.reference_key
        )
        uid = extra.get("uid")
        key = str(uid) if uid is not None else json.dumps(prompt, sort_keys=True, default=str)
        size = self._size(extra, extra_info)
        sample = Sample(key, prompt, response, reference, size, has_uid=uid is not None)
        session = extra.get("session_id")  # veRL's v1 agent loop: this rollout's index, [0, n)
        if uid is not None and session is not None:
            sample.id = f"{uid}:{session}"
        return sample

    def _size(self, extra: Any, extra_info: Any) -> int:
        """The rollouts in this row's group: ``__rollout_n__``, the split rule, ``rollout.n``."""
        per_prompt = extra.get("__rollout_n__")
        if per_prompt is not None:
            return max(1, int(per_prompt))
        split = extra_info.get("split") if hasattr(extra_info, "get") else None
        return self.val_group_size if split in VALIDATION_SPLITS else self.group_size

    def _service_options(self) -> Any:
        """The ``reward:`` options the cohort service runs with: the manager's
        group wait (``group.timeout_s``); the judge gets ``reward.service.timeout_s`` from a
        group's close (``deadline="close"``)."""
        group = self.options.group.model_copy(update={"timeout_s": self.group_timeout_s})
        return self.options.model_copy(update={"group": group})

    def local(self) -> CohortService:
        """The core's cohort service that holds this worker's groups (built on first use, so
        ``group_timeout_s`` may be set until then)."""
        if self._local is None:
            self._local = CohortService(
                shared_scorer(self.reward_config.scorer),
                self._service_options(),
                deadline="close",
                max_pending=1
                << 30,  # a whole step waits here; reward.service.max_pending_bytes bounds it
                max_group_size=1 << 16,
                on_split=self._split_rule(),
            )
        return self._local

    def _cohort_actor(self, own: dict[str, Any], workers: int, config: Any) -> RayCohorts:
        """``cohort: ray``: the job's cohort actor (:mod:`rmr1_plugins.serve.ray_actor`),
        able to hold every worker's share of a step at once."""
        if own["cohort"] != "ray":
            got = own["cohort"]
            raise ValueError(f"rmr1 reward manager: +reward.rmr1.cohort must be ray, got {got!r}")
        if own.get("cohort_url"):
            raise ValueError(
                "rmr1 reward manager: set +reward.rmr1.cohort=ray or +reward.rmr1.cohort_url, "
                "not both"
            )
        cap = int(own.get(ray_workers.MARK) or ray_workers.concurrency(config, own))
        service = self.reward_config.model_copy(update={"reward": self._service_options()})
        timeout = float(own.get("cohort_timeout_s", 600))  # how long a full actor is retried
        return RayCohorts(service, self._split_rule(), max(1, workers) * cap, timeout)

    def _split_rule(self) -> SplitRule:
        """What a group closed short gets, here, in the cohort actor or in ``rmr1 serve``:
        ``error`` is ``reference`` (a late rollout never fails a step)."""
        return "drop" if self.on_split == "drop" else "reference"

    async def _join(self, sample: Sample) -> dict[str, Any]:
        member = Member(
            sample.key, sample.size, sample.prompt, sample.response, sample.reference, id=sample.id
        )
        try:
            answer = await self.local().reward(member)
        except (
            Overloaded,
            ValueError,
        ) as error:  # over reward.service.max_pending_bytes: the fallback
            logger.error("rmr1 reward manager: rollout of group %s refused: %s", sample.key, error)
            return result(None, 0, self.options, kind="error", error=f"reward manager: {error}")
        if answer.error:
            logger.warning("rmr1 reward manager: %s", answer.error)
        if answer.late:
            logger.warning(
                "rmr1 reward manager: a rollout of group %s came after its group.timeout_s; "
                "group.on_split=%s, answered at once",
                sample.key,
                self.on_split,
            )
        elif answer.arrived < answer.expected:
            self._report(sample.key, answer)
        return {"score": float(answer.reward), **answer.logs()}

    def _report(self, key: str, answer: CohortReward) -> None:
        """Log a group closed short of its size, once for its rollouts answered together."""
        if self._reported == key:
            return
        self._reported = key
        log = logger.error if self.on_split == "error" else logger.warning
        log(
            "rmr1 reward manager: incomplete group %s: got %d of %d rollouts in %gs (split across "
            "reward workers?); group.on_split=%s (error is judged as reference: never a crash)",
            key,
            answer.arrived,
            answer.expected,
            self.group_timeout_s,
            self.on_split,
        )


def _cohort_client(
    own: dict[str, Any], workers: int, config: Any, needs_reference: bool
) -> CohortClient | None:
    """The cohort service client with several reward workers and a ``cohort_url``; several
    workers without one cannot keep a group together, so an in-group strategy refuses to start.
    """
    url = own.get("cohort_url")
    if workers <= 1 or needs_reference:
        return None  # one worker sees every rollout: the in-process barrier suffices
    if not url:
        colocated = _get(config, "reward", "reward_model", "enable", default=False) and not (
            _get(config, "reward", "reward_model", "enable_resource_pool", default=False)
        )
        how = (
            "colocated, veRL cuts the batch into one chunk per worker in the order rollouts "
            "finished"
            if colocated
            else "streaming, veRL sends each rollout to a random worker"
        )
        raise ValueError(
            f"rmr1 reward manager: reward.num_workers={workers} splits groups ({how}); set "
            "+reward.rmr1.cohort=ray (one cohort actor in this Ray cluster), "
            "+reward.rmr1.cohort_url to an `rmr1 serve` /cohort endpoint (docs/trainers/verl.md) "
            "or reward.num_workers=1"
        )
    return CohortClient(str(url), float(own.get("cohort_timeout_s", 600)), own.get("token"))


def _in_ray_actor() -> bool:
    """Whether this manager runs inside a Ray actor (a veRL ``RewardLoopWorker``)."""
    try:
        import ray

        return ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None
    except Exception:  # no Ray, or no runtime context: not in a worker
        return False


def _plain(value: Any) -> Any:
    """An OmegaConf node as plain Python (dicts and lists), anything else unchanged."""
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(value):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover - veRL always ships omegaconf
        pass
    return value


def _get(node: Any, *path: str, default: Any = None) -> Any:
    for key in path:
        node = node.get(key) if hasattr(node, "get") else None
        if node is None:
            return default
    return node


# Registered here, once the class exists: imported before verl, this module is still partial
# when ``import verl`` runs rmr1_verl.plugin (see there).
register("rmr1")(RMR1RewardManager)
ray_workers.install()
