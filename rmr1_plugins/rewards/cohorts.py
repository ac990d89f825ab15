"""Whole-group rewards for trainers that ask for one rollout's reward at a time.

OpenRLHF and veRL's reward workers send each rollout on its own; an in-group strategy needs the
whole group. A :class:`CohortService` holds each rollout (a
:class:`~rmr1_plugins.rewards.cohort_table.Member`) in a
:class:`~rmr1_plugins.rewards.cohort_table.CohortTable` until its cohort is complete, judges the
cohort with the configured strategy and answers every member:

- what a cohort's members get is :func:`~rmr1_plugins.rewards.groups.plan_group`'s rule: a
  cohort not complete ``group_timeout_s`` seconds after its first member arrived is judged with
  the members it has (``partial``; ``on_split="reference"``: each against its reference,
  ``"drop"``: the fallback, as the veRL manager asks); below two members, the member is judged
  against its reference (``alone``; no reference: the fallback reward); a group of one
  (validation, n = 1) is judged against its reference at once;
- **late members** (``timeout_s`` after the close; ``deadline="close"``:
  ``2 × group_timeout_s + timeout_s``) are answered at once, judged alone against the reference
  (``alone``, ``late``) or given the fallback (``no_reference``), never held for a new cohort;
- **repeats**: a member with an ``id`` already received with the same prompt and response gets
  that member's answer, never counted as new; with another response (a re-issued rollout) it
  takes the old member's place. Answers of the last ``recent`` ids are kept;
- every cohort's pairs go to the shared batching service
  (:class:`~rmr1_plugins.rewards.service.RewardService`); every member is answered exactly once,
  within ``timeout_s`` of its cohort's first member (the wait is capped at half of ``timeout_s``)
  or, with ``deadline="close"`` (the veRL manager's), within ``timeout_s`` of its cohort's close;
- **streaming** (:mod:`rmr1_plugins.rewards.streaming`): pairs judged while the cohort fills.

No trainer is imported. See docs/concepts/cohorts.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from rmr1_plugins.offload import off_loop
from rmr1_plugins.rewards.cohort_table import (
    RECENT,
    Cohort,
    CohortTable,
    Member,
    Overloaded,
    digest,
)
from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.rewards.engine import Group, GroupRewards, texts_of
from rmr1_plugins.rewards.groups import GroupPlan, SplitRule, plan_group, scoring
from rmr1_plugins.rewards.health import PREFIX as HEALTH_PREFIX
from rmr1_plugins.rewards.health import Tally
from rmr1_plugins.rewards.metrics import FALLBACK_KINDS, judged_metrics, sample_metrics
from rmr1_plugins.rewards.service import Failure, RewardService
from rmr1_plugins.rewards.strategies import Strategy
from rmr1_plugins.rewards.streaming import EarlyPairs, streams
from rmr1_plugins.scorer import Scorer

logger = logging.getLogger("rmr1_plugins.rewards.cohorts")
# What can happen to a member: judged with part of its group, judged alone against the
# reference, or one of the fallbacks (metrics.FALLBACK_KINDS; ``dropped`` with on_split="drop").
FALLBACKS = FALLBACK_KINDS  # kinds that give the fallback
KINDS = ("partial", "alone", *FALLBACKS)
SPLIT_RULES = ("partial", "reference", "drop")  # what a cohort closed short can get


def groups_samples(config: RewardConfig) -> bool:
    """Whether ``config`` asks for whole-group rewards: an in-group strategy, a group size > 1."""
    return not config.build_strategy().needs_reference and (config.group.size or 1) > 1


@dataclass
class CohortReward:
    """A member's reward and how it was reached; ``kind`` is one of :data:`KINDS` or None."""

    reward: float
    win: float | None = None  # the strategy's value before scaling; None with the fallback
    kind: str | None = None
    group: int = 0  # members judged together (0: none, the fallback)
    expected: int = 0
    judgments: int = 0
    unparsed: int = 0
    error: str | None = None
    health: dict[str, float] = field(default_factory=lambda: Tally().sample_logs())
    reference: bool = False  # judged against the reference answer
    clipped: bool = False  # the member's response was cut at max_response_chars
    metrics: dict[str, float] | None = None  # judged_metrics, once its cohort was judged
    late: bool = False  # arrived after its cohort was judged: answered alone, at once
    split: bool = False  # its cohort closed short of its size
    arrived: int = 0  # members of its cohort that came

    @property
    def fallback(self) -> bool:
        return self.kind in FALLBACK_KINDS

    def logs(self) -> dict[str, float]:
        """The member's metrics (:mod:`rmr1_plugins.rewards.metrics`): the contract's keys."""
        if self.metrics is not None:
            return {**self.metrics, "rmr1_clipped": float(self.clipped)}
        return sample_metrics(
            kind=self.kind if self.fallback else None,
            reference=self.reference,
            split=self.split or self.kind in ("partial", "alone") or self.late,
            clipped=self.clipped,
            group=self.group,
            judgments=self.judgments,
            unparsed=self.unparsed,
            health=self.health,
        )


class CohortService:
    """Answers :class:`Member` requests with whole-group rewards; see the module docstring.

    Use it from one event loop: ``await service.reward(member)`` (or ``await
    service.submit(member)``, which accepts or refuses at once) from any number of tasks, and
    ``await service.aclose()`` at the end. Pairs are judged by ``service`` (a started or
    unstarted :class:`RewardService` shared with other callers), else by one of its own around
    ``scorer``. ``on_split`` is what a cohort closed short gets (``partial``, ``reference`` or
    ``drop``; see :func:`~rmr1_plugins.rewards.groups.plan_group`), unless its first member
    names one. ``deadline`` is where the
    judge's ``timeout_s`` counts from: the cohort's first member (``"first"``) or its close.
    """

    def __init__(
        self,
        scorer: Scorer,
        config: RewardConfig | None = None,
        *,
        service: RewardService | None = None,
        max_pending: int = 4096,
        max_group_size: int = 256,
        recent: int = RECENT,
        clock: Any = time.monotonic,
        on_split: SplitRule = "partial",
        deadline: Literal["first", "close"] = "first",
    ) -> None:
        if on_split not in SPLIT_RULES:
            raise ValueError(f"on_split must be partial, reference or drop, got {on_split!r}")
        if deadline not in ("first", "close"):
            raise ValueError(f"deadline must be first or close, got {deadline!r}")
        self.scorer = scorer
        self.on_split = on_split
        self.config = config or (service.config if service is not None else RewardConfig())
        self.judge = service or RewardService(scorer, self.config)
        self._owns_judge = service is None
        self.strategy: Strategy = self.config.build_strategy()
        self.stream = streams(self.config.group.stream_pairs, self.strategy)
        if self.stream:
            self.strategy = self.strategy.streamed()
        self.deadline = deadline
        timeout_s, group_timeout_s = self.config.service.timeout_s, self.config.group.timeout_s
        self.group_timeout_s = (
            group_timeout_s if deadline == "close" else min(group_timeout_s, timeout_s / 2)
        )
        self.table = CohortTable(
            self.group_timeout_s,
            max_pending,
            max_group_size,
            max_bytes=self.config.service.max_pending_bytes,
            late_s=timeout_s if deadline == "first" else 2 * group_timeout_s + timeout_s,
            recent=recent,
        )
        self.stats: Counter[str] = Counter()
        self.recent = recent
        self._clock = clock
        self.early_pairs = EarlyPairs(
            self.judge,
            self.config,
            self.strategy,
            self.table,
            self.stats,
            clock,
            group_timeout_s=self.group_timeout_s,
            deadline=deadline,
        )
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # by id: the digest of its prompt and response (see _content), and its answer
        self._ids: dict[str, tuple[str, asyncio.Future[CohortReward]]] = {}  # not yet answered
        self._answered: OrderedDict[str, tuple[str, CohortReward]] = OrderedDict()
        self._closed = False

    @property
    def pending(self) -> int:
        """Members held or being judged, not yet answered."""
        return self.table.held

    def check(self, size: Any, count: int = 1, nbytes: int = 0) -> None:
        """Raise as :meth:`submit` would for ``count`` new members (``nbytes`` of text) of a
        group of ``size``: ValueError for a bad size, :class:`Overloaded` without room."""
        if self._closed:
            raise Overloaded("the cohort service is shutting down")
        self.table.check_size(size)
        self.table.room(count, nbytes)

    def submit(self, member: Member) -> Awaitable[CohortReward]:
        """Accept ``member`` now (or raise, holding nothing); await the result for its reward.

        A repeat of a received ``(key, id)`` with the same prompt and response is never refused
        and never counted again; with another response it is a new member (a re-issued rollout)."""
        name = None if member.id is None else digest(member.key, member.id)
        content = "" if name is None else _content(member)  # only an id can repeat
        if name is not None:
            repeat = self._repeat(name, content)
            if repeat is not None:
                return repeat
            replaced = self._replace(name, content, member)
            if replaced is not None:
                return replaced
        if self._closed:
            raise Overloaded("the cohort service is shutting down")
        if member.on_split not in (None, *SPLIT_RULES):
            raise ValueError(
                f"on_split must be partial, reference or drop, got {member.on_split!r}"
            )
        if self.strategy.needs_reference:  # nothing to wait for: each member vs its reference
            member = replace(member, size=1)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[CohortReward] = loop.create_future()
        closed = self.table.add(member, future, self._clock())  # raises before holding
        self.stats["members"] += 1
        if name is not None:
            self._ids[name] = (content, future)  # a re-issued member replaces the old one here
            future.add_done_callback(lambda done: self._remember(name, content, done))
        if closed is not None:
            self._start(closed)
        elif self.stream:
            cohort = self.table.open_cohort(member.key)
            assert cohort is not None
            self.early_pairs.send(cohort, [len(cohort.responses) - 1])
        self._arm()
        return future

    async def reward(self, member: Member) -> CohortReward:
        """The member's reward once its cohort is judged (or its wait ended); a cancelled caller
        leaves the member held, so a retry with its ``id`` gets its answer."""
        return await asyncio.shield(self.submit(member))

    async def aclose(self) -> None:
        """Judge no more: members still held get the fallback (``error``: shutting down)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        for cohort in self.table.drain():  # held, never started
            self._settle(cohort, [self._fallback("error", "the cohort service stopped")])
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._owns_judge:
            await self.judge.aclose()

    # -- internals ------------------------------------------------------------------------------

    def _repeat(self, name: str, content: str) -> Awaitable[CohortReward] | None:
        """The answer to a repeat of id ``name``, or None: a new member (never received, or
        re-issued with another prompt or response: the old answer is dropped)."""
        answered = self._answered.get(name)
        waiting = self._ids.get(name)
        found = answered if answered is not None else waiting
        if found is not None and found[0] != content:
            self.stats["reissued"] += 1
            self._answered.pop(name, None)
            return None
        if answered is not None:
            self.stats["repeats"] += 1
            done: asyncio.Future[CohortReward] = asyncio.get_running_loop().create_future()
            done.set_result(_copy(answered[1]))
            return done
        if waiting is not None:
            self.stats["repeats"] += 1
            return asyncio.shield(waiting[1])
        return None

    def _replace(
        self, name: str, content: str, member: Member
    ) -> asyncio.Future[CohortReward] | None:
        """A re-issued id whose old member still waits in an open cohort takes the old member's
        place there (the group keeps its size and its other members); None if it no longer
        waits. The old caller, if still waiting, gets the new member's answer."""
        waiting = self._ids.get(name)
        if waiting is None:
            return None
        future: asyncio.Future[CohortReward] = asyncio.get_running_loop().create_future()
        if not self.table.replace(member, waiting[1], future):
            return None
        # Its pairs with members already there are not sent again (judged when the cohort
        # closes): re-issuing an id many times costs no more judgments than once.
        self._ids[name] = (content, future)
        future.add_done_callback(lambda done: self._remember(name, content, done))
        future.add_done_callback(lambda done: _forward(done, waiting[1]))
        return future

    def _remember(self, name: str, content: str, future: asyncio.Future[CohortReward]) -> None:
        if self._ids.get(name, (None, None))[1] is not future:
            return  # a re-issued member replaced it
        del self._ids[name]
        if future.cancelled() or future.exception() is not None:
            return
        self._answered[name] = (content, future.result())
        while len(self._answered) > self.recent:
            self._answered.popitem(last=False)

    def _arm(self) -> None:
        """One timer, at the oldest open cohort's deadline."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.table.next_deadline()
        if deadline is not None and not self._closed:
            loop = asyncio.get_running_loop()
            delay = max(0.0, deadline - self._clock())
            self._timer = loop.call_later(delay, self._expire)

    def _expire(self) -> None:
        self._timer = None
        for cohort in self.table.due(self._clock()):
            self._start(cohort)
        self._arm()

    def _start(self, cohort: Cohort) -> None:
        if cohort.early:
            try:
                in_group = self._plan(cohort).kind in ("whole", "partial")
            except ValueError:  # _rewards meets it again and answers with the fallback
                in_group = False
            if in_group:
                self.judge.hurry(id(cohort))  # it waits for them now
            else:  # judged against the reference or the fallback: in-group pairs are unused
                self.early_pairs.withdraw(cohort)
        task = asyncio.ensure_future(self._judge(cohort))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _judge(self, cohort: Cohort) -> None:
        from_first = self.deadline == "first" and not cohort.late
        start = cohort.opened if from_first else self._clock()  # else now: it just closed
        budget = max(start + self.config.service.timeout_s - self._clock(), 0.001)
        try:
            rewards = await asyncio.wait_for(self._rewards(cohort, budget), timeout=budget)
        except asyncio.TimeoutError:
            rewards = [self._fallback("timeout", "the judge did not answer in time")]
        except asyncio.CancelledError:
            self._settle(cohort, [self._fallback("error", "the cohort service stopped")])
            raise
        except Exception as error:  # a bug or a failed judge: the fallback, counted and logged
            logger.warning("rmr1 cohorts: the judge failed: %s: %s", type(error).__name__, error)
            rewards = [self._fallback("error", f"judge failed: {type(error).__name__}: {error}")]
        self._settle(cohort, rewards)

    def _plan(self, cohort: Cohort) -> GroupPlan:
        on_split = cohort.on_split or self.on_split
        return plan_group(
            len(cohort.responses),
            cohort.size,
            self.strategy,
            has_reference=cohort.reference is not None,
            on_split=on_split,
        )

    async def _rewards(self, cohort: Cohort, budget: float) -> list[CohortReward]:
        size = len(cohort.responses)
        plan = self._plan(cohort)
        if cohort.late:
            self.stats["late"] += size
        elif plan.split:
            self.stats["partial_cohorts"] += 1
        else:
            self.stats["complete_cohorts"] += 1
        if plan.strategy is None:
            assert plan.fallback is not None
            why = plan.reason if not cohort.late else f"{plan.reason}; late: its cohort closed"
            return [replace(self._fallback(plan.fallback, why), split=plan.split)]
        group = Group(cohort.prompt, cohort.responses, reference=cohort.reference)
        # Building pairs, the strategy's fits and the members' metrics grow with the group: off
        # the loop, as in ascore_groups.
        run = await off_loop(scoring, [group], self.config, plan.strategy)
        end = asyncio.get_running_loop().time() + budget
        while not run.done:
            examples = await off_loop(run.examples)
            remaining = end - asyncio.get_running_loop().time()
            results = await self.early_pairs.verdicts(cohort, examples, remaining)
            failed = next((r for r in results if isinstance(r, Failure)), None)
            if failed is not None:
                return [self._fallback(failed.kind, failed.message)]
            await off_loop(run.feed, [r for r in results if not isinstance(r, Failure)])
        [judged] = run.rewards()
        return await off_loop(self._members, judged, plan, cohort, group)

    def _members(
        self, judged: GroupRewards, plan: GroupPlan, cohort: Cohort, group: Group
    ) -> list[CohortReward]:
        texts = texts_of(group)
        return [self._member(judged, i, plan, cohort, texts) for i in range(len(group.completions))]

    def _member(
        self,
        judged: GroupRewards,
        index: int,
        plan: GroupPlan,
        cohort: Cohort,
        texts: Sequence[str],
    ) -> CohortReward:
        """Member ``index``'s reward; its logs are :func:`~.metrics.judged_metrics`' (a group the
        engine refused is ``bad_input``, one whose comparisons were all excluded ``unparsed``)."""
        split = plan.split or cohort.late
        metrics = judged_metrics(judged, index, texts, reference=plan.reference, split=split)
        counts: dict[str, Any] = {
            "group": int(metrics["rmr1_group"]),
            "judgments": int(metrics["rmr1_judgments"]),
            "unparsed": int(metrics["rmr1_unparsed_comparisons"]),
            "health": {k: v for k, v in metrics.items() if k.startswith(HEALTH_PREFIX)},
            "metrics": metrics,
            "expected": cohort.size,
        }
        win = judged.rewards[index]
        if win is None:
            fallback = next(k for k in FALLBACK_KINDS if metrics[f"rmr1_{k}"])
            why = judged.error or "no comparison with a verdict (on_unparsed=exclude)"
            return replace(self._fallback(fallback, why), **counts)
        assert plan.strategy is not None
        value = self.config.scale(win, plan.strategy)
        assert value is not None
        kind = plan.kind if split else None
        return CohortReward(value, win, kind, reference=plan.reference, **counts)

    def _fallback(self, kind: str, message: str) -> CohortReward:
        reward = self.config.fallback_reward
        return CohortReward(
            reward, None, kind, error=f"fallback reward {reward:g} ({kind}): {message}"
        )

    def _settle(self, cohort: Cohort, rewards: list[CohortReward]) -> None:
        """Answer every member once: one reward each, or one reward shared by all."""
        if len(rewards) == 1 and len(cohort.tickets) > 1:
            rewards = [_copy(rewards[0]) for _ in cohort.tickets]
        self.table.finish(cohort)
        self.early_pairs.withdraw(cohort)  # unused early pairs still queued
        for future, reward, clipped in zip(cohort.tickets, rewards, cohort.clipped, strict=True):
            reward.expected = reward.expected or cohort.size
            reward.clipped = clipped
            reward.late = cohort.late
            reward.arrived = len(cohort.tickets)
            if reward.kind is not None:
                self.stats[reward.kind] += 1
            if not future.done():
                self.stats["answered"] += 1
                future.set_result(reward)


def _forward(done: asyncio.Future[CohortReward], old: asyncio.Future[CohortReward]) -> None:
    """Answer a replaced member's caller with its replacement's answer."""
    if not old.done() and not done.cancelled() and done.exception() is None:
        old.set_result(_copy(done.result()))


def _content(member: Member) -> str:
    """A digest of what a member asks to be judged on: its prompt and response."""
    prompt = member.prompt
    text = prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, default=str)
    return digest(text, member.response)


def _copy(reward: CohortReward) -> CohortReward:
    metrics = None if reward.metrics is None else dict(reward.metrics)
    return replace(reward, health=dict(reward.health), metrics=metrics)
