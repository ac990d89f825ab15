"""RM-R1 judges as TRL reward functions (``GRPOTrainer`` / ``RLOOTrainer`` ``reward_funcs``).

TRL calls a reward function once per generation batch with every completion of this process:
``prompts``, ``completions`` (strings, or assistant message lists for conversational data),
``completion_ids``, one keyword per extra dataset column, and ``trainer_state``, ``log_extra``
and ``log_metric``. The ``num_generations`` completions of a prompt are consecutive, so a group
is a run of consecutive identical prompts (cut into ``num_generations``-sized groups when the
same prompt appears twice in a row).

A returned ``None`` becomes NaN in TRL: the row takes no part in that reward's mean, and a row
that every reward function leaves ``None`` gets advantage 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rmr1_plugins.config import deep_merge
from rmr1_plugins.errors import RMR1Error
from rmr1_plugins.rewards.batch import (
    BatchPlan,
    BatchRewards,
    Rows,
    SplitRows,
    ascore_batch,
    plan_batch,
    score_batch,
)
from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.rewards.inputs import TRL_KWARGS
from rmr1_plugins.rewards.metrics import means
from rmr1_plugins.scorer import Scorer
from rmr1_plugins.scorer_config import LazyScorer
from rmr1_plugins.settings import RewardSettings, load_reward_settings


class SplitGroupError(RMR1Error, RuntimeError):
    """A prompt's completions arrived incomplete (split across processes)."""


def group_size_for(configured: int | None, log_metric: Any) -> int | None:
    """The group size of this call: in training ``reward.group.size``, else the trainer's
    ``num_generations``; in evaluation always its ``num_generations_eval`` (it usually differs).

    TRL passes its bound ``_log_metric`` method as ``log_metric``, which leads to the trainer.
    """
    trainer = getattr(log_metric, "__self__", None)
    training = getattr(getattr(trainer, "model", None), "training", True)
    size = getattr(trainer, "num_generations" if training else "num_generations_eval", None)
    size = size if isinstance(size, int) and size > 0 else None
    return (configured or size) if training else size


class RMR1Reward:
    """A TRL reward function that judges each prompt's completions with an RM-R1 judge.

    Args:
        config: a :class:`~rmr1_plugins.settings.RewardSettings`, a YAML path, or ``None`` to read
            ``$RMR1_CONFIG`` and ``RMR1_*`` variables on first call.
        scorer: a ready :class:`rmr1_plugins.Scorer` to use instead of the config's judge.
        name: the ``__name__`` TRL logs under (``rewards/<name>/mean``).
        **reward: overrides for :class:`~rmr1_plugins.rewards.config.RewardConfig` (``strategy``,
            ``on_unparsed``, ``seed``, ``win``, ``loss``; a section as a dict:
            ``group={"size": 8, "on_split": "drop"}``, ``inputs={"reference_key": "answer"}``,
            merged into the file's). Both A/B orders are judged when the scorer's ``order`` is
            ``both``.

    Returns one reward per completion (the strategy's value on ``[loss, win]``, see
    :mod:`~rmr1_plugins.rewards.engine`), or ``None`` for a row that cannot be judged (a prompt with
    a ``tool`` turn, a missing reference, a failed judge call: logged as warnings) or that
    ``group.on_split: drop`` leaves out. A group of one (``num_generations_eval=1``, a prompt seen
    once) is judged against the ``inputs.reference_key`` column when the batch has it
    (``rmr1_reference=1``), else gets ``None`` (``rmr1_no_reference``). A configuration that
    cannot work raises on the first call. Nothing is loaded until then; pickling keeps the
    configuration only, so instances survive TRL's spawned reward workers.

    Logged through TRL: ``<name>/judgments`` (judge completions per call), the batch mean of
    each key of the metrics contract (:mod:`~rmr1_plugins.rewards.metrics`: ``rmr1_fallback``, ...,
    ``rmr1_health/<metric>``; a row returned as ``None`` counts as a fallback), and the
    completion-table columns ``<name>_verdicts`` (opponents, outcomes, votes) and
    ``<name>_rationale`` (the judge's text for the completion's first comparison). With
    ``reward.hard_pairs.path`` set, hard comparisons are appended there
    (:mod:`rmr1_plugins.rewards.hard_pairs`).

    Example:
        >>> from trl import GRPOTrainer                                       # doctest: +SKIP
        >>> reward = RMR1Reward("rmr1.yaml", strategy="round-robin")          # doctest: +SKIP
        >>> GRPOTrainer(model=..., reward_funcs=[reward], ...)                # doctest: +SKIP
    """

    def __init__(
        self,
        config: RewardSettings | str | Path | None = None,
        *,
        scorer: Scorer | None = None,
        name: str = "rmr1_reward",
        **reward: Any,
    ) -> None:
        self.__name__ = name
        self._source = config
        self._overrides = reward
        self._config: RewardSettings | None = None
        self._scorer: LazyScorer | None = LazyScorer(scorer=scorer) if scorer is not None else None
        if isinstance(config, RewardSettings):
            self._config = config.model_copy(
                update={"reward": RewardConfig(**deep_merge(config.reward.model_dump(), reward))}
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.__name__!r})"

    @property
    def config(self) -> RewardSettings:
        """The configuration, loaded on first use (so ``RMR1_*`` variables are read late)."""
        if self._config is None:
            source = self._source if isinstance(self._source, (str, Path)) else None
            self._config = load_reward_settings(source, reward=self._overrides)
        return self._config

    @property
    def options(self) -> RewardConfig:
        return self.config.reward

    @property
    def scorer(self) -> Scorer:
        """The judge, built (and its model loaded) on first use."""
        if self._scorer is None:
            self._scorer = LazyScorer(self.config.scorer)
        return self._scorer.get()

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        completion_ids: Sequence[Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        plan = self._plan(prompts, completions, kwargs)
        return self._log(score_batch(plan, lambda: self.scorer), kwargs)

    def _plan(self, prompts: Sequence[Any], completions: Sequence[Any], kwargs: dict) -> BatchPlan:
        """The batch's plan: TRL's group size, and the dataset columns among its kwargs."""
        size = group_size_for(self.options.group.size, kwargs.get("log_metric"))
        columns = {key: value for key, value in kwargs.items() if key not in TRL_KWARGS}
        try:
            return plan_batch(prompts, completions, self.options, columns, size, name=self.__name__)
        except SplitRows as error:
            raise SplitGroupError(self._split_message(error.rows, size)) from error

    def _split_message(self, split: list[Rows], size: int | None) -> str:
        where = ", ".join(f"rows {r.start}-{r.stop - 1}" for r in split[:3])
        expected = f"num_generations={size}" if size else "the other groups' size"
        return (
            f"{self.__name__}: the completions at {where} do not form whole groups of "
            f"{expected}: a prompt's group was split across processes, and pairwise strategies "
            "need the whole group. Make per_device_train_batch_size * steps_per_generation a "
            "multiple of num_generations, or set reward.group.on_split "
            "(RMR1_REWARD__GROUP__ON_SPLIT) to "
            "'reference' (judge those rows against the reference column) or 'drop' (reward None)."
        )

    def _log(self, batch: BatchRewards, kwargs: dict) -> list[float | None]:
        """Log through TRL: the completion-table columns, the call's cost and the batch mean of
        each key of the metrics contract."""
        log_metric, log_extra = kwargs.get("log_metric"), kwargs.get("log_extra")
        name = self.__name__
        if log_extra is not None:
            log_extra(f"{name}_verdicts", batch.verdicts)
            log_extra(f"{name}_rationale", batch.rationale)
        if log_metric is not None:
            log_metric(f"{name}/judgments", float(batch.judgments))
            for key, value in means(batch.metrics).items():
                log_metric(key, value)
        return batch.rewards


class AsyncRMR1Reward(RMR1Reward):
    """:class:`RMR1Reward` with ``async __call__``: TRL awaits it on its event-loop thread,
    concurrently with other async reward functions. Use it with a server backend (``openai``);
    in-process engines run in a worker thread. Its ``__call__`` is the sync one's async twin:
    the same signature on purpose (TRL tells them apart by ``async`` alone)."""

    async def __call__(  # type: ignore[override]
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        completion_ids: Sequence[Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        plan = self._plan(prompts, completions, kwargs)
        return self._log(await ascore_batch(plan, lambda: self.scorer), kwargs)
