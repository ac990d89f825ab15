"""Streaming cohorts: judging a cohort's pairs while it fills (``reward.group.stream_pairs``).

While a cohort fills, each pair the strategy knows early
(:meth:`~rmr1_plugins.rewards.strategies.Strategy.early_pairs`) goes to the batching service as
soon as both of its members have arrived (identical text pairs once), queued behind the work of
complete groups. When the cohort closes, its strategy is played as for the whole group; a pair
already judged early (same prompt, same two texts in the same slots) takes its early verdict (kept
without the judge's text), the others and later rounds are judged then. By default only strategies
that draw no positions at random stream (:func:`streams`; their rewards are unchanged); with
``stream_pairs`` true the others take those positions from arrival order
(:meth:`~rmr1_plugins.rewards.strategies.Strategy.streamed`: the pivot is the first arrival). A
cohort closed short reuses its early verdicts with ``partial`` and withdraws them with
``reference`` / ``drop``; early pairs still queued when a cohort is answered are withdrawn. A
re-issued member's early verdicts are ignored and its pairs with members already there are judged
at the close, not sent again. See docs/concepts/cohorts.md.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Literal

from rmr1_plugins.rewards.cohort_table import Cohort, CohortTable
from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.rewards.inputs import as_context, as_text
from rmr1_plugins.rewards.service import Failure, RewardService
from rmr1_plugins.rewards.strategies import Pair, Strategy
from rmr1_plugins.schema import PairResult, PairwiseExample, ParsedParts


def streams(stream_pairs: bool | None, strategy: Strategy) -> bool:
    """Whether cohorts judge ``strategy``'s pairs while they fill: ``stream_pairs`` true, or
    None (the default) and the strategy draws no positions at random (its rewards are then the
    same streamed or not). A strategy against the reference is judged at once anyway."""
    if strategy.needs_reference or stream_pairs is False:
        return False
    return stream_pairs is True or not strategy.draws_positions


class EarlyPairs:
    """A cohort service's early pairs: sent to ``judge`` while cohorts fill, their verdicts kept
    on each cohort (``cohort.early``) until its strategy asks for them."""

    def __init__(
        self,
        judge: RewardService,
        config: RewardConfig,
        strategy: Strategy,
        table: CohortTable,
        stats: Counter[str],
        clock: Callable[[], float],
        *,
        group_timeout_s: float,
        deadline: Literal["first", "close"],
    ) -> None:
        self.judge = judge
        self.config = config
        self.strategy = strategy
        self.table = table
        self.stats = stats
        self.group_timeout_s = group_timeout_s
        self.deadline = deadline
        self._clock = clock

    def send(
        self, cohort: Cohort, indices: Sequence[int], pairs: Sequence[Pair] | None = None
    ) -> None:
        """Send the pairs that the arrival of members ``indices`` made known (``pairs``: these)
        to the batching service, queued as early work; the verdicts wait in ``cohort.early``."""
        if pairs is None:
            pairs = [p for i in indices for p in self.strategy.early_pairs(i, cohort.size)]
        if not pairs or cohort.context is False:
            return
        if cohort.context is None:
            try:
                cohort.context = as_context(cohort.prompt)
            except ValueError:
                cohort.context = False  # judged (and refused) with the whole group
                return
        context = cohort.context
        examples, keys, seen = [], [], set(cohort.early)
        for first, second in pairs:
            a, b = as_text(cohort.responses[first]), as_text(cohort.responses[second])
            if a == b or (a, b) in seen:  # a tie without the judge, or already sent
                continue
            seen.add((a, b))
            keys.append((a, b))
            examples.append(
                PairwiseExample(
                    id=f"0:{first}:{second}", context=context, response_a=a, response_b=b
                )
            )
        if not examples:
            return
        # the latest time its cohort could still use them (the service's judging deadline)
        close = cohort.opened + (self.group_timeout_s if self.deadline == "close" else 0.0)
        budget = max(close + self.config.service.timeout_s - self._clock(), 0.001)
        task = asyncio.ensure_future(self._early(cohort, examples, budget))
        self.stats["early_pairs"] += len(examples)
        for position, key in enumerate(keys):
            cohort.early[key] = (task, position)

    async def _early(
        self, cohort: Cohort, examples: list[PairwiseExample], budget: float
    ) -> list[PairResult | Failure]:
        """Early pairs, queued as early work unless their cohort closed meanwhile; their
        verdicts without the judge's text (the judge health and hard pairs took it already)."""
        tag = id(cohort) if self.table.is_open(cohort) else None
        results = await self.judge.judge(examples, budget, early=tag)
        return [_verdict_only(r) for r in results]  # held until the cohort closes

    async def verdicts(
        self, cohort: Cohort, examples: list[PairwiseExample], timeout_s: float
    ) -> list[PairResult | Failure]:
        """The results of a round's ``examples``: early verdicts where the cohort has them (each
        used once: a pair asked again is judged again), the judge's for the others (one call)."""
        early = [cohort.early.pop((e.response_a, e.response_b), None) for e in examples]
        fresh = [e for e, known in zip(examples, early, strict=True) if known is None]
        judged = iter(await self.judge.judge(fresh, timeout_s) if fresh else [])
        results: list[PairResult | Failure] = []
        for known in early:
            if known is None:
                results.append(next(judged))
                continue
            task, position = known
            results.append((await task)[position])
            self.stats["early_used"] += 1
        return results

    @staticmethod
    def withdraw(cohort: Cohort) -> None:
        """Cancel the cohort's early pairs: queued ones are never judged, verdicts dropped."""
        for task, _ in cohort.early.values():
            task.cancel()
        cohort.early = {}


def _verdict_only(result: PairResult | Failure) -> PairResult | Failure:
    """``result`` without its judgments' text (completion, parsed sections): what the engine
    and the metrics read (verdicts, votes, slots, finish reasons, probabilities) is kept."""
    if isinstance(result, Failure):
        return result
    slim = [
        j.model_copy(update={"completion": "", "parts": ParsedParts()}) for j in result.judgments
    ]
    return result.model_copy(update={"judgments": slim})
