"""Whole-group rewards for trainers that ask for one rollout's reward at a time.

OpenRLHF and veRL's reward workers send each rollout on its own; an in-group strategy needs the
whole group. A :class:`CohortService` holds each rollout (a :class:`Member`) until its cohort is
complete, judges the cohort with the configured strategy and answers every member:

- a member names its group (``key``: veRL's ``uid``, OpenRLHF's prompt text) and the group's
  expected ``size`` (the rollout n); the first member's size and prompt count for the cohort;
- members with the same key fill a cohort of ``size`` in arrival order, then the next one opens:
  a prompt repeated in one step gives several cohorts;
- a cohort not complete ``group_timeout`` seconds after its first member arrived is judged with
  the members it has (``partial``); below two members, the member is judged against its
  reference (``alone``; no reference: the fallback reward); a group of one (validation, n = 1)
  is judged against its reference at once;
- every member is answered exactly once, within ``timeout_s`` of its cohort's first member: the
  judge gets what is left after the wait (the wait is capped at half of ``timeout_s``);
- members held are bounded (``max_pending``: :class:`Overloaded` before one is accepted), and so
  is a cohort's size (``max_group_size``).

:class:`CohortTable` is the bookkeeping without I/O or clocks (times are passed in);
:class:`CohortService` drives it on an asyncio loop. No trainer is imported.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from rmr1_plugins.errors import RMR1Error
from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.rewards.engine import Group, GroupRewards, ascore_groups, texts_of
from rmr1_plugins.rewards.health import PREFIX as HEALTH_PREFIX
from rmr1_plugins.rewards.health import Tally
from rmr1_plugins.rewards.metrics import FALLBACK_KINDS, judged_metrics, sample_metrics
from rmr1_plugins.rewards.strategies import Strategy, resolve_strategy

logger = logging.getLogger("rmr1_plugins.rewards.cohorts")
# What can happen to a member: judged with part of its group, judged alone against the
# reference, or one of the fallbacks (metrics.FALLBACK_KINDS).
KINDS = ("partial", "alone", "bad_input", "no_reference", "unparsed", "error", "timeout")
FALLBACKS = KINDS[2:]  # kinds that give the fallback


def groups_samples(config: RewardConfig) -> bool:
    """Whether ``config`` asks for whole-group rewards: an in-group strategy, a group size > 1."""
    return not config.build_strategy().needs_reference and (config.group_size or 1) > 1


class Overloaded(RMR1Error, RuntimeError):
    """More than ``max_pending`` members would be held; nothing was accepted."""


@dataclass(frozen=True)
class Member:
    """One rollout: its group, the group's expected size, the response, optionally a reference.

    ``prompt`` is a string or a chat message list (see :func:`~.inputs.as_context`).
    """

    key: str
    size: int
    prompt: str | Sequence[Mapping[str, Any]]
    response: str
    reference: str | None = None
    clipped: bool = False  # the response was cut at max_response_chars


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

    @property
    def fallback(self) -> bool:
        return self.kind in FALLBACKS

    def logs(self) -> dict[str, float]:
        """The member's metrics (:mod:`rmr1_plugins.rewards.metrics`): the contract's keys."""
        if self.metrics is not None:
            return {**self.metrics, "rmr1_clipped": float(self.clipped)}
        return sample_metrics(
            kind=self.kind if self.fallback else None,
            reference=self.reference,
            split=self.kind in ("partial", "alone"),
            clipped=self.clipped,
            group=self.group,
            judgments=self.judgments,
            unparsed=self.unparsed,
            health=self.health,
        )


@dataclass
class Cohort:
    """Members of one group, in arrival order; ``tickets[i]`` is what the driver answers."""

    key: str
    size: int
    opened: float
    prompt: Any
    responses: list[str] = field(default_factory=list)
    references: list[str | None] = field(default_factory=list)
    clipped: list[bool] = field(default_factory=list)
    tickets: list[Any] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return len(self.responses) >= self.size

    @property
    def reference(self) -> str | None:
        return next((r for r in self.references if r is not None), None)


class CohortTable:
    """Open cohorts by key, oldest first; no clock, no I/O (``now`` is passed in)."""

    def __init__(self, wait_s: float, max_pending: int = 4096, max_group_size: int = 256) -> None:
        if wait_s <= 0 or max_pending < 1 or max_group_size < 1:
            raise ValueError("wait_s, max_pending and max_group_size must be positive")
        self.wait_s = wait_s
        self.max_pending = max_pending
        self.max_group_size = max_group_size
        self.held = 0  # members in open cohorts
        self._open: OrderedDict[str, Cohort] = OrderedDict()  # opening order = deadline order

    def __len__(self) -> int:
        return len(self._open)

    def check(self, size: Any, count: int = 1) -> None:
        """Raise before accepting ``count`` members: a bad size (ValueError) or no room."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"group size must be a positive integer, got {size!r}")
        if size > self.max_group_size:
            raise ValueError(f"group size {size} is over max_group_size {self.max_group_size}")
        if self.held + count > self.max_pending:
            raise Overloaded(f"{self.held} members waiting (limit {self.max_pending})")

    def add(self, member: Member, ticket: Any, now: float) -> Cohort | None:
        """Hold ``member``; returns its cohort when this member completed it (now closed)."""
        self.check(member.size)
        key = _digest(member.key)
        cohort = self._open.get(key)
        if cohort is None:
            cohort = Cohort(key, member.size, now, member.prompt)
            self._open[key] = cohort
        cohort.responses.append(member.response)
        cohort.references.append(member.reference)
        cohort.clipped.append(member.clipped)
        cohort.tickets.append(ticket)
        self.held += 1
        if cohort.complete:
            self._close(cohort)
            return cohort
        return None

    def due(self, now: float) -> list[Cohort]:
        """Close and return the cohorts whose wait ended by ``now`` (oldest first)."""
        closed = []
        while self._open:
            cohort = next(iter(self._open.values()))
            if cohort.opened + self.wait_s > now:
                break
            self._close(cohort)
            closed.append(cohort)
        return closed

    def next_deadline(self) -> float | None:
        """When the oldest open cohort's wait ends, or None."""
        for cohort in self._open.values():
            return cohort.opened + self.wait_s
        return None

    def drain(self) -> list[Cohort]:
        """Close and return every open cohort."""
        closed = list(self._open.values())
        for cohort in closed:
            self._close(cohort)
        return closed

    def _close(self, cohort: Cohort) -> None:
        del self._open[cohort.key]
        self.held -= len(cohort.responses)


def _digest(key: str) -> str:
    """A fixed-size key: a prompt text can be long, and only one copy of it is kept."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class CohortService:
    """Answers :class:`Member` requests with whole-group rewards; see the module docstring.

    Use it from one event loop: ``await service.reward(member)`` from any number of tasks (it
    raises only :class:`Overloaded` or ``ValueError`` for a bad size, before holding the member),
    and ``await service.aclose()`` at the end. ``scorer`` needs ``ascore``.
    """

    def __init__(
        self,
        scorer: Any,
        config: RewardConfig | None = None,
        *,
        max_pending: int = 4096,
        max_group_size: int = 256,
        clock: Any = time.monotonic,
    ) -> None:
        self.scorer = scorer
        self.config = config or RewardConfig()
        self.strategy: Strategy = self.config.build_strategy()
        self.wait_s = min(self.config.group_timeout, self.config.timeout_s / 2)
        self.table = CohortTable(self.wait_s, max_pending, max_group_size)
        self.stats: Counter[str] = Counter()
        self._clock = clock
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._judging = 0  # members whose cohort is being judged
        self._closed = False

    @property
    def pending(self) -> int:
        """Members held or being judged, not yet answered."""
        return self.table.held + self._judging

    def check(self, size: Any, count: int = 1) -> None:
        """Raise as :meth:`reward` would for ``count`` new members of a group of ``size``."""
        if self._closed:
            raise Overloaded("the cohort service is shutting down")
        self.table.check(size, count + self._judging)

    async def reward(self, member: Member) -> CohortReward:
        """The member's reward once its cohort is judged (or its wait ended)."""
        self.check(member.size)
        if self.strategy.needs_reference:  # nothing to wait for: each member vs its reference
            member = replace(member, size=1)
        future: asyncio.Future[CohortReward] = asyncio.get_running_loop().create_future()
        self.stats["members"] += 1
        closed = self.table.add(member, future, self._clock())
        if closed is not None:
            self._start(closed)
        self._arm()
        return await future

    async def aclose(self) -> None:
        """Judge no more: members still held get the fallback (``error``: shutting down)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        for cohort in self.table.drain():  # held, never started: not counted in _judging
            stopped = self._fallback("error", "the cohort service stopped")
            self._settle(cohort, [stopped], judging=False)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- internals ------------------------------------------------------------------------------

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
        self._judging += len(cohort.responses)
        task = asyncio.ensure_future(self._judge(cohort))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _judge(self, cohort: Cohort) -> None:
        budget = cohort.opened + self.config.timeout_s - self._clock()
        try:
            rewards = await asyncio.wait_for(self._rewards(cohort), timeout=max(budget, 0.001))
        except asyncio.TimeoutError:
            rewards = [self._fallback("timeout", "the judge did not answer in time")]
        except asyncio.CancelledError:
            rewards = [self._fallback("error", "the cohort service stopped")]
            self._settle(cohort, rewards)
            raise
        except Exception as error:  # a failed judge: the fallback, counted and logged
            logger.warning("rmr1 cohorts: the judge failed: %s: %s", type(error).__name__, error)
            rewards = [self._fallback("error", f"judge failed: {type(error).__name__}: {error}")]
        self._settle(cohort, rewards)

    async def _rewards(self, cohort: Cohort) -> list[CohortReward]:
        size, expected = len(cohort.responses), cohort.size
        strategy: Strategy = self.strategy
        kind: str | None = None
        if size < expected:
            self.stats["partial_cohorts"] += 1
            kind = "partial" if size >= 2 else "alone"
        else:
            self.stats["complete_cohorts"] += 1
        if size < 2 and not strategy.needs_reference:
            strategy = resolve_strategy("reference")
        if strategy.needs_reference and cohort.reference is None:
            why = "no reference answer to judge against"
            if size < expected:
                why += f" (the group got {size} of {expected} members in {self.wait_s:g} s)"
            return [self._fallback("no_reference", why)]
        group = Group(cohort.prompt, cohort.responses, reference=cohort.reference)
        [judged] = await ascore_groups(
            self.scorer,
            [group],
            strategy,
            outcome=self.config.outcome,
            on_unparsed=self.config.on_unparsed,
            seed=self.config.seed,
            skip_invalid=True,
        )
        texts = texts_of(group)
        return [self._member(judged, i, strategy, kind, expected, texts) for i in range(size)]

    def _member(
        self,
        judged: GroupRewards,
        index: int,
        strategy: Strategy,
        kind: str | None,
        expected: int,
        texts: Sequence[str],
    ) -> CohortReward:
        """Member ``index``'s reward; its logs are :func:`~.metrics.judged_metrics`' (a group the
        engine refused is ``bad_input``, one whose comparisons were all excluded ``unparsed``)."""
        metrics = judged_metrics(
            judged, index, texts, reference=strategy.needs_reference, split=kind is not None
        )
        counts: dict[str, Any] = {
            "group": int(metrics["rmr1_group"]),
            "judgments": int(metrics["rmr1_judgments"]),
            "unparsed": int(metrics["rmr1_unparsed_comparisons"]),
            "health": {k: v for k, v in metrics.items() if k.startswith(HEALTH_PREFIX)},
            "metrics": metrics,
        }
        win = judged.rewards[index]
        if win is None:
            fallback = next(k for k in FALLBACK_KINDS if metrics[f"rmr1_{k}"])
            why = judged.error or "no comparison with a verdict (on_unparsed=exclude)"
            return replace(self._fallback(fallback, why), expected=expected, **counts)
        value = self.config.scale(win, strategy)
        assert value is not None
        reference = strategy.needs_reference
        return CohortReward(value, win, kind, expected=expected, reference=reference, **counts)

    def _fallback(self, kind: str, message: str) -> CohortReward:
        reward = self.config.fallback_reward
        return CohortReward(
            reward, None, kind, error=f"fallback reward {reward:g} ({kind}): {message}"
        )

    def _settle(self, cohort: Cohort, rewards: list[CohortReward], judging: bool = True) -> None:
        """Answer every member once: one reward each, or one reward shared by all."""
        if len(rewards) == 1 and len(cohort.tickets) > 1:
            rewards = [_copy(rewards[0]) for _ in cohort.tickets]
        if judging:
            self._judging -= len(cohort.tickets)
        for future, reward, clipped in zip(cohort.tickets, rewards, cohort.clipped, strict=True):
            reward.expected = reward.expected or cohort.size
            reward.clipped = clipped
            if reward.kind is not None:
                self.stats[reward.kind] += 1
            if not future.done():
                self.stats["answered"] += 1
                future.set_result(reward)


def _copy(reward: CohortReward) -> CohortReward:
    metrics = None if reward.metrics is None else dict(reward.metrics)
    return replace(reward, health=dict(reward.health), metrics=metrics)
