"""A trainer's batch of rows scored group by group, with a ``reward:`` section's settings.

Trainers that call a reward function with a whole batch (TRL's ``reward_funcs``) hand it rows:
a prompt and a completion each, the rows of a prompt's group side by side, and dataset columns
(a reference answer among them). The adapter reads its trainer's arguments; here, for any
trainer:

- :func:`find_groups` cuts the rows into groups (runs of consecutive identical prompts, of
  ``group_size`` rows when known) and marks the incomplete ones;
- :func:`plan_batch` gives each group its plan (:func:`~rmr1_plugins.rewards.groups.plan_group`
  with ``reward.group.on_split``): judged with the strategy, judged alone against its reference,
  or a fallback. It raises :class:`SplitRows` for ``on_split="error"`` and a ``ValueError`` naming
  the column when judging needs a reference column the batch lacks;
- :func:`score_batch` and :func:`ascore_batch` (sync/async twins) judge the plan and give
  :class:`BatchRewards`: per row the reward on ``[loss, win]`` (``None``: not judged; a warning
  says why), a verdict line, the judge's rationale and the metrics contract's values
  (:mod:`~rmr1_plugins.rewards.metrics`), and record hard pairs
  (:mod:`~rmr1_plugins.rewards.hard_pairs`).

A judge call that fails gives its groups ``None`` (``rmr1_error``); a configuration that cannot
work (``ConfigError``, ``ImportError``) raises.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rmr1_plugins.config import ConfigError
from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.rewards.engine import Group, GroupRewards, texts_of
from rmr1_plugins.rewards.groups import (
    AGAINST_REFERENCE,
    GroupPlan,
    SplitGroup,
    ascore,
    plan_group,
    score,
)
from rmr1_plugins.rewards.hard_pairs import record_groups
from rmr1_plugins.rewards.inputs import as_text
from rmr1_plugins.rewards.metrics import judged_metrics, sample_metrics
from rmr1_plugins.rewards.strategies import Strategy
from rmr1_plugins.scorer import PairScorer

logger = logging.getLogger(__name__)
JUDGE_FAILED = "the judge failed"


@dataclass
class Rows:
    """Rows ``start:stop`` share one prompt; ``split`` when they cannot be whole groups, of
    ``expected`` rows (0: as many as it has)."""

    start: int
    stop: int
    split: bool = False
    expected: int = 0

    @property
    def size(self) -> int:
        return self.stop - self.start


class SplitRows(SplitGroup):
    """Groups of the batch arrived incomplete with ``on_split="error"``; ``rows`` are those."""

    def __init__(self, message: str, rows: list[Rows]) -> None:
        super().__init__(message)
        self.rows = rows


def find_groups(prompts: Sequence[Any], group_size: int | None) -> list[Rows]:
    """Groups of consecutive identical prompts, and which of them are incomplete.

    With ``group_size`` known, a run of k × ``group_size`` rows is k groups and any other length
    is split. Without it, a run at either edge of the batch that is shorter than the longest run
    is taken as split; a group cut exactly at a multiple of the others' size goes unnoticed, so
    pass ``group_size`` (the trainer's number of completions per prompt) when known.
    """
    runs: list[Rows] = []
    for index, prompt in enumerate(prompts):
        if runs and prompts[runs[-1].start] == prompt:
            runs[-1].stop = index + 1
        else:
            runs.append(Rows(index, index + 1))
    if group_size is None:
        longest = max((run.size for run in runs), default=0)
        for run in (runs[0], runs[-1]) if runs else ():
            run.split = run.size < longest
            run.expected = longest if run.split else 0
        return runs
    groups: list[Rows] = []
    for run in runs:
        size = run.size
        if size % group_size:
            expected = -(-size // group_size) * group_size  # more rows than it has: incomplete
            groups.append(Rows(run.start, run.stop, split=True, expected=expected))
        else:
            groups += [Rows(s, s + group_size) for s in range(run.start, run.stop, group_size)]
    return groups


@dataclass
class BatchPlan:
    """A batch's plans (:func:`plan_batch`): groups to judge with the strategy, groups judged
    alone against the reference (split groups with ``on_split="reference"``, groups of one),
    and rows no judge sees (``unjudged``: dropped, or no reference to judge against)."""

    config: RewardConfig
    size: int
    name: str = "rmr1"
    groups: list[Group] = field(default_factory=list)
    rows: list[range] = field(default_factory=list)
    alone: list[Group] = field(default_factory=list)
    alone_rows: list[range] = field(default_factory=list)
    alone_split: list[bool] = field(default_factory=list)  # split, not a group of one
    unjudged: list[tuple[range, GroupPlan]] = field(default_factory=list)


@dataclass
class BatchRewards:
    """Per row: the reward (``None``: not judged), a verdict line (its opponents, outcomes and
    votes, or why it was not judged), the judge's text for its first comparison and the metrics
    contract's values; ``judgments`` counts the judge completions of the whole batch."""

    rewards: list[float | None]
    verdicts: list[str]
    rationale: list[str]
    metrics: list[dict[str, float]]
    judgments: int


def plan_batch(
    prompts: Sequence[Any],
    completions: Sequence[Any],
    config: RewardConfig,
    columns: Mapping[str, Sequence[Any]],
    group_size: int | None = None,
    *,
    name: str = "rmr1",
) -> BatchPlan:
    """The plan of a batch whose groups are runs of identical prompts (:func:`find_groups`).

    ``columns`` are the batch's dataset columns (the reference answer is
    ``columns[config.inputs.reference_key]``); ``name`` prefixes errors and warnings.
    """
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    strategy = config.build_strategy()
    runs = (
        [Rows(i, i + 1) for i in range(len(prompts))]
        if strategy.needs_reference  # every completion is judged on its own
        else find_groups(prompts, group_size)
    )
    try:  # which plans judge against a reference (and on_split="error" raises here)
        plans = [_plan(run, strategy, config, True) for run in runs]
    except SplitGroup as error:
        raise SplitRows(str(error), [run for run in runs if run.split]) from error
    # A group of one (a prompt seen once) is judged against the reference column when there is
    # one; a split group or a reference strategy needs it.
    needed = any(p.reference and (p.split or strategy.needs_reference) for p in plans)
    wanted = any(p.reference for p in plans) and config.inputs.reference_key in columns
    references = _references(columns, config, len(prompts), name) if needed or wanted else None
    batch = BatchPlan(config, len(prompts), name)
    for run in runs:
        rows = range(run.start, run.stop)
        reference = None if references is None else _reference(references[run.start])
        plan = _plan(run, strategy, config, reference is not None)
        if plan.strategy is None:
            batch.unjudged.append((rows, plan))
            continue
        group = Group(
            prompts[run.start],
            [completions[i] for i in rows],
            reference=reference,
            id=f"rows {run.start}-{run.stop - 1}",
        )
        if plan.kind == "alone":
            batch.alone.append(group)
            batch.alone_rows.append(rows)
            batch.alone_split.append(plan.split)
        else:
            batch.groups.append(group)
            batch.rows.append(rows)
    return batch


def score_batch(plan: BatchPlan, get_scorer: Callable[[], PairScorer]) -> BatchRewards:
    """Judge ``plan`` with the scorer ``get_scorer()`` builds (only when a group needs it)."""
    main = _score(plan.groups, plan.config, None, get_scorer)
    alone = _score(plan.alone, plan.config, AGAINST_REFERENCE, get_scorer)
    return _finish(plan, main, alone)


async def ascore_batch(plan: BatchPlan, get_scorer: Callable[[], PairScorer]) -> BatchRewards:
    """The async twin of :func:`score_batch`: the two judgings run concurrently, and the scorer
    is built in a worker thread, off the event loop."""
    main, alone = await asyncio.gather(
        _ascore(plan.groups, plan.config, None, get_scorer),
        _ascore(plan.alone, plan.config, AGAINST_REFERENCE, get_scorer),
    )
    return _finish(plan, main, alone)


def _score(
    groups: list[Group],
    config: RewardConfig,
    strategy: Strategy | None,
    get_scorer: Callable[[], PairScorer],
) -> list[GroupRewards]:
    if not groups:
        return []
    try:
        return score(get_scorer(), groups, config, strategy)
    except (ConfigError, ImportError):
        raise  # a configuration that cannot work: fail the first step, clearly
    except Exception as error:
        return _failed(groups, error)


async def _ascore(
    groups: list[Group],
    config: RewardConfig,
    strategy: Strategy | None,
    get_scorer: Callable[[], PairScorer],
) -> list[GroupRewards]:
    if not groups:
        return []
    try:
        scorer = await asyncio.to_thread(get_scorer)  # build (and load) off the event loop
        return await ascore(scorer, groups, config, strategy)
    except (ConfigError, ImportError):
        raise
    except Exception as error:
        return _failed(groups, error)


def _failed(groups: Sequence[Group], error: Exception) -> list[GroupRewards]:
    """``None`` rewards for groups whose judge call failed (the ``error`` names it)."""
    message = f"{JUDGE_FAILED} ({type(error).__name__}: {error})"
    return [GroupRewards([None] * len(g.completions), error=message) for g in groups]


def _plan(run: Rows, strategy: Strategy, config: RewardConfig, has_reference: bool) -> GroupPlan:
    expected = run.expected or run.size
    return plan_group(
        run.size, expected, strategy, has_reference=has_reference, on_split=config.group.on_split
    )


def _references(
    columns: Mapping[str, Sequence[Any]], config: RewardConfig, size: int, name: str
) -> Sequence[Any]:
    key = config.inputs.reference_key
    if key not in columns:
        raise ValueError(
            f"{name}: strategy {config.strategy!r} (or group.on_split: reference) needs the "
            f"dataset column {key!r} with a reference answer; the batch has columns "
            f"{sorted(columns)}. "
            "Set reward.inputs.reference_key (RMR1_REWARD__INPUTS__REFERENCE_KEY)."
        )
    values = columns[key]
    if len(values) != size:
        raise ValueError(f"column {key!r} has {len(values)} values for {size} completions")
    return values


def _reference(value: Any) -> str | None:
    """A reference column's value as text; ``None`` (no reference) when missing or empty."""
    text = None if value is None else as_text(value)
    return text if text is not None and text.strip() else None


def _finish(plan: BatchPlan, main: list[GroupRewards], alone: list[GroupRewards]) -> BatchRewards:
    config, name = plan.config, plan.name
    verdicts = [""] * plan.size
    metrics = [sample_metrics()] * plan.size
    for rows, group_plan in plan.unjudged:
        why = group_plan.reason
        if group_plan.fallback == "no_reference":
            key = config.inputs.reference_key
            why = f"rows {rows[0]}-{rows[-1]}: judging needs a reference answer ({key!r}): {why}"
            logger.warning("%s: %s; its rows get reward None", name, why)
        for row in rows:
            verdicts[row] = why
            metrics[row] = sample_metrics(kind=group_plan.fallback, split=group_plan.split)
    rewards: list[float | None] = [None] * plan.size
    rationale = [""] * plan.size
    strategy = config.build_strategy()
    judged = zip(
        [*plan.rows, *plan.alone_rows],
        [*main, *alone],
        [*plan.groups, *plan.alone],
        [strategy] * len(main) + [AGAINST_REFERENCE] * len(alone),
        [False] * len(main) + plan.alone_split,
        strict=True,
    )
    for rows, result, group, chosen, split in judged:
        if result.error:
            logger.warning("%s: %s; its rows get reward None", name, result.error)
        kind = None
        if result.error:
            kind = "error" if result.error.startswith(JUDGE_FAILED) else "bad_input"
        texts = texts_of(group)
        for position, row in enumerate(rows):
            rewards[row] = config.scale(result.rewards[position], chosen)
            verdicts[row] = result.error or result.summary(position)
            first = next((c.result for c in result.involving(position) if c.result), None)
            if first is not None and first.judgments:
                rationale[row] = first.judgments[0].completion
            metrics[row] = judged_metrics(
                result, position, texts, reference=chosen.needs_reference, kind=kind, split=split
            )
    results = [*main, *alone]
    record_groups(config, [*plan.groups, *plan.alone], results)
    judgments = sum(r.judgments for r in results)
    return BatchRewards(rewards, verdicts, rationale, metrics, judgments)
