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

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmr1_plugins.config import ConfigError
from rmr1_plugins.errors import RMR1Error
from rmr1_plugins.rewards.config import (
    LazyScorer,
    RewardConfig,
    RewardSettings,
    load_reward_settings,
)
from rmr1_plugins.rewards.engine import (
    Group,
    GroupRewards,
    ascore_groups,
    score_groups,
    texts_of,
)
from rmr1_plugins.rewards.groups import GroupPlan, SplitGroup, plan_group
from rmr1_plugins.rewards.hard_pairs import record_groups
from rmr1_plugins.rewards.inputs import TRL_KWARGS, as_text
from rmr1_plugins.rewards.metrics import judged_metrics, means, sample_metrics
from rmr1_plugins.rewards.strategies import Strategy, resolve_strategy
from rmr1_plugins.rewards.verifiable import TRLVerifiableReward as TRLVerifiableReward

logger = logging.getLogger(__name__)
JUDGE_FAILED = "the judge failed"


class SplitGroupError(RMR1Error, RuntimeError):
    """A prompt's completions arrived incomplete (split across processes)."""


@dataclass
class Run:
    """Rows ``start:stop`` share one prompt; ``split`` when they cannot be whole groups, of
    ``expected`` rows (0: as many as it has)."""

    start: int
    stop: int
    split: bool = False
    expected: int = 0

    @property
    def size(self) -> int:
        return self.stop - self.start


def find_groups(prompts: Sequence[Any], group_size: int | None) -> list[Run]:
    """Groups of consecutive identical prompts, and which of them are incomplete.

    With ``group_size`` known, a run of k × ``group_size`` rows is k groups and any other length
    is split. Without it, a run at either edge of the batch that is shorter than the longest run
    is taken as split; a group cut exactly at a multiple of the others' size goes unnoticed, so
    set ``group_size`` (TRL's own ``num_generations`` is read from the trainer when possible).
    """
    runs: list[Run] = []
    for index, prompt in enumerate(prompts):
        if runs and prompts[runs[-1].start] == prompt:
            runs[-1].stop = index + 1
        else:
            runs.append(Run(index, index + 1))
    if group_size is None:
        longest = max((run.size for run in runs), default=0)
        for run in (runs[0], runs[-1]) if runs else ():
            run.split = run.size < longest
            run.expected = longest if run.split else 0
        return runs
    groups: list[Run] = []
    for run in runs:
        size = run.size
        if size % group_size:
            expected = -(-size // group_size) * group_size  # more rows than it has: incomplete
            groups.append(Run(run.start, run.stop, split=True, expected=expected))
        else:
            groups += [Run(s, s + group_size) for s in range(run.start, run.stop, group_size)]
    return groups


def trainer_group_size(log_metric: Any) -> int | None:
    """``num_generations`` (or ``num_generations_eval`` in evaluation) of the calling trainer.

    TRL passes its bound ``_log_metric`` method as ``log_metric``, which leads to the trainer.
    """
    trainer = getattr(log_metric, "__self__", None)
    if trainer is None:
        return None
    training = getattr(getattr(trainer, "model", None), "training", True)
    size = getattr(trainer, "num_generations" if training else "num_generations_eval", None)
    return size if isinstance(size, int) and size > 0 else None


def group_size_for(configured: int | None, log_metric: Any) -> int | None:
    """The group size of this call: ``reward.group_size`` in training, and never in evaluation,
    where the trainer's ``num_generations_eval`` counts (it usually differs)."""
    trainer = getattr(log_metric, "__self__", None)
    if trainer is not None and not getattr(getattr(trainer, "model", None), "training", True):
        return trainer_group_size(log_metric)
    return configured or trainer_group_size(log_metric)


@dataclass
class _Job:
    """One call's plans (:func:`~rmr1_plugins.rewards.groups.plan_group`): groups to judge with
    the strategy, groups judged against the reference (``alone``: split groups with
    ``on_split="reference"``, groups of one), and groups given the fallback (``None``)."""

    size: int
    groups: list[Group] = field(default_factory=list)
    rows: list[range] = field(default_factory=list)
    fallback: list[Group] = field(default_factory=list)
    fallback_rows: list[range] = field(default_factory=list)
    fallback_split: list[bool] = field(default_factory=list)  # split, not a group of one
    unjudged: list[tuple[range, GroupPlan]] = field(default_factory=list)  # dropped, no_reference


class RMR1Reward:
    """A TRL reward function that judges each prompt's completions with an RM-R1 judge.

    Args:
        config: a :class:`~rmr1_plugins.rewards.RewardSettings`, a YAML path, or ``None`` to read
            ``$RMR1_CONFIG`` and ``RMR1_*`` variables on first call.
        scorer: a ready :class:`rmr1_plugins.Scorer` to use instead of the config's judge.
        name: the ``__name__`` TRL logs under (``rewards/<name>/mean``).
        **reward: overrides for :class:`~rmr1_plugins.rewards.config.RewardConfig` (``strategy``,
            ``on_unparsed``, ``seed``, ``reference_key``, ``group_size``, ``on_split``,
            ``win``, ``loss``). Both A/B orders are judged when the scorer's ``order`` is
            ``both``.

    Returns one reward per completion (the strategy's value on ``[loss, win]``, see
    :mod:`~rmr1_plugins.rewards.engine`), or ``None`` for a row that cannot be judged (a prompt with
    a ``tool`` turn, a missing reference, a failed judge call: logged as warnings) or that
    ``on_split="drop"`` leaves out. A group of one (``num_generations_eval=1``, a prompt seen
    once) is judged against the ``reference_key`` column when the batch has it
    (``rmr1_reference=1``), else gets ``None`` (``rmr1_no_reference``). A configuration that
    cannot work raises on the first call. Nothing is loaded until then; pickling keeps the
    configuration only, so instances survive TRL's spawned reward workers.

    Logged through TRL: ``<name>/judgments`` (judge completions per call), the batch mean of
    each key of the metrics contract (:mod:`~rmr1_plugins.rewards.metrics`: ``rmr1_fallback``, ...,
    ``rmr1_health/<metric>``; a row returned as ``None`` counts as a fallback), and the
    completion-table columns ``<name>_verdicts`` (opponents, outcomes, votes) and
    ``<name>_rationale`` (the judge's text for the completion's first comparison). With
    ``reward.hard_pairs_path`` set, hard comparisons are appended there
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
        scorer: Any = None,
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
                update={"reward": RewardConfig(**{**config.reward.model_dump(), **reward})}
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
    def scorer(self) -> Any:
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
        job = self._plan(prompts, completions, kwargs)
        main = self._score(job.groups, self.options.build_strategy())
        fallback = self._score(job.fallback, "reference")
        return self._finish(job, main, fallback, kwargs)

    def _arguments(self, strategy: str | Strategy) -> dict[str, Any]:
        options = self.options
        return {
            "strategy": strategy,
            "outcome": options.outcome,
            "on_unparsed": options.on_unparsed,
            "seed": options.seed,
            "skip_invalid": True,
        }

    def _score(self, groups: list[Group], strategy: str | Strategy) -> list[GroupRewards]:
        if not groups:
            return []
        try:
            return score_groups(self.scorer, groups, **self._arguments(strategy))
        except (ConfigError, ImportError):
            raise  # a configuration that cannot work: fail the first step, clearly
        except Exception as error:
            return _failed(groups, error)

    async def _ascore(self, groups: list[Group], strategy: str | Strategy) -> list[GroupRewards]:
        if not groups:
            return []
        try:
            await asyncio.to_thread(lambda: self.scorer)  # build (and load) off the event loop
            return await ascore_groups(self.scorer, groups, **self._arguments(strategy))
        except (ConfigError, ImportError):
            raise
        except Exception as error:
            return _failed(groups, error)

    def _plan(self, prompts: Sequence[Any], completions: Sequence[Any], kwargs: dict) -> _Job:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        options = self.options
        strategy = options.build_strategy()
        size = group_size_for(options.group_size, kwargs.get("log_metric"))
        runs = (
            [Run(i, i + 1) for i in range(len(prompts))]
            if strategy.needs_reference  # every completion is judged on its own
            else find_groups(prompts, size)
        )
        try:  # which plans judge against a reference (and on_split="error" raises here)
            plans = [self._group_plan(run, strategy, True) for run in runs]
        except SplitGroup as error:
            split = [run for run in runs if run.split]
            raise SplitGroupError(self._split_message(split, size)) from error
        # A group of one (num_generations_eval=1, a prompt seen once) is judged against the
        # reference column when there is one; a split group or a reference strategy needs it.
        needed = any(p.reference and (p.split or strategy.needs_reference) for p in plans)
        wanted = any(p.reference for p in plans) and options.reference_key in kwargs
        references = self._references(kwargs, len(prompts)) if needed or wanted else None
        job = _Job(len(prompts))
        for run in runs:
            rows = range(run.start, run.stop)
            reference = None if references is None else _reference(references[run.start])
            plan = self._group_plan(run, strategy, reference is not None)
            if plan.strategy is None:
                job.unjudged.append((rows, plan))
                continue
            group = Group(
                prompts[run.start],
                [completions[i] for i in rows],
                reference=reference,
                id=f"rows {run.start}-{run.stop - 1}",
            )
            if plan.kind == "alone":
                job.fallback.append(group)
                job.fallback_rows.append(rows)
                job.fallback_split.append(plan.split)
            else:
                job.groups.append(group)
                job.rows.append(rows)
        return job

    def _group_plan(self, run: Run, strategy: Strategy, has_reference: bool) -> GroupPlan:
        expected = run.expected or run.size
        on_split = self.options.on_split
        return plan_group(
            run.size, expected, strategy, has_reference=has_reference, on_split=on_split
        )

    def _references(self, kwargs: dict, size: int) -> Sequence[Any]:
        key = self.options.reference_key
        if key not in kwargs:
            columns = sorted(k for k in kwargs if k not in TRL_KWARGS)
            raise ValueError(
                f"{self.__name__}: strategy {self.options.strategy!r} (or on_split='reference') "
                f"needs the dataset column {key!r} with a reference answer; the batch has "
                f"columns {columns}. Set reward.reference_key (RMR1_REWARD__REFERENCE_KEY)."
            )
        values = kwargs[key]
        if len(values) != size:
            raise ValueError(f"column {key!r} has {len(values)} values for {size} completions")
        return values

    def _split_message(self, split: list[Run], size: int | None) -> str:
        where = ", ".join(f"rows {r.start}-{r.stop - 1}" for r in split[:3])
        expected = f"num_generations={size}" if size else "the other groups' size"
        return (
            f"{self.__name__}: the completions at {where} do not form whole groups of "
            f"{expected}: a prompt's group was split across processes, and pairwise strategies "
            "need the whole group. Make per_device_train_batch_size * steps_per_generation a "
            "multiple of num_generations, or set reward.on_split (RMR1_REWARD__ON_SPLIT) to "
            "'reference' (judge those rows against the reference column) or 'drop' (reward None)."
        )

    def _finish(
        self,
        job: _Job,
        main: list[GroupRewards],
        fallback: list[GroupRewards],
        kwargs: dict,
    ) -> list[float | None]:
        rewards: list[float | None] = [None] * job.size
        verdicts = [""] * job.size
        for rows, plan in job.unjudged:
            why = plan.reason
            if plan.fallback == "no_reference":
                key = self.options.reference_key
                why = (
                    f"rows {rows[0]}-{rows[-1]}: judging needs a reference answer ({key!r}): {why}"
                )
                logger.warning("%s: %s; its rows get reward None", self.__name__, why)
            for row in rows:
                verdicts[row] = why
        rationale = [""] * job.size
        judged = [*zip(job.rows, main, strict=True), *zip(job.fallback_rows, fallback, strict=True)]
        strategies = [self.options.build_strategy()] * len(main)
        strategies += [resolve_strategy("reference")] * len(fallback)
        for (rows, result), strategy in zip(judged, strategies, strict=True):
            if result.error:
                logger.warning("%s: %s; its rows get reward None", self.__name__, result.error)
            for position, row in enumerate(rows):
                rewards[row] = self.options.scale(result.rewards[position], strategy)
                verdicts[row] = result.error or result.summary(position)
                first = next((c for c in result.involving(position) if c.result), None)
                if first is not None and first.result.judgments:
                    rationale[row] = first.result.judgments[0].completion
        self._log(kwargs, [r for _, r in judged], verdicts, rationale)
        groups = [*job.groups, *job.fallback]
        if kwargs.get("log_metric") is not None:
            for key, value in means(self._metrics(job, judged, groups, strategies)).items():
                kwargs["log_metric"](key, value)
        record_groups(self.options, groups, [r for _, r in judged])
        return rewards

    @staticmethod
    def _metrics(
        job: _Job,
        judged: list[tuple[range, GroupRewards]],
        groups: list[Group],
        strategies: list[Strategy],
    ) -> list[dict[str, float]]:
        """Each row's metrics (the contract of :mod:`rmr1_plugins.rewards.metrics`)."""
        metrics = [sample_metrics()] * job.size
        for rows, plan in job.unjudged:
            for row in rows:
                metrics[row] = sample_metrics(kind=plan.fallback, split=plan.split)
        splits = [False] * len(job.groups) + job.fallback_split
        for (rows, result), group, strategy, split in zip(
            judged, groups, strategies, splits, strict=True
        ):
            texts = texts_of(group)
            for position, row in enumerate(rows):
                kind = None
                if result.error:
                    kind = "error" if result.error.startswith(JUDGE_FAILED) else "bad_input"
                metrics[row] = judged_metrics(
                    result,
                    position,
                    texts,
                    reference=strategy.needs_reference,
                    kind=kind,
                    split=split,
                )
        return metrics

    def _log(
        self,
        kwargs: dict,
        results: list[GroupRewards],
        verdicts: list[str],
        rationale: list[str],
    ) -> None:
        log_metric, log_extra = kwargs.get("log_metric"), kwargs.get("log_extra")
        name = self.__name__
        if log_extra is not None:
            log_extra(f"{name}_verdicts", verdicts)
            log_extra(f"{name}_rationale", rationale)
        if log_metric is None:
            return
        # The call's cost; everything else is the metrics contract's (logged by _finish).
        log_metric(f"{name}/judgments", float(sum(r.judgments for r in results)))


class AsyncRMR1Reward(RMR1Reward):
    """:class:`RMR1Reward` with ``async __call__``: TRL awaits it on its event-loop thread,
    concurrently with other async reward functions. Use it with a server backend (``openai``);
    in-process engines run in a worker thread."""

    async def __call__(  # type: ignore[override]
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        completion_ids: Sequence[Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        job = self._plan(prompts, completions, kwargs)
        main, fallback = await asyncio.gather(
            self._ascore(job.groups, self.options.build_strategy()),
            self._ascore(job.fallback, "reference"),
        )
        return self._finish(job, main, fallback, kwargs)


def _failed(groups: list[Group], error: Exception) -> list[GroupRewards]:
    """``None`` rewards for groups whose judge call failed (a warning names the error)."""
    message = f"{JUDGE_FAILED} ({type(error).__name__}: {error})"
    return [GroupRewards([None] * len(g.completions), error=message) for g in groups]


def _reference(value: Any) -> str | None:
    """A reference column's value as text; ``None`` (no reference) when missing or empty."""
    text = None if value is None else as_text(value)
    return text if text is not None and text.strip() else None
