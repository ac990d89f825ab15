"""Whole-group rewards for trainers that ask for one rollout's reward at a time.

OpenRLHF and veRL's reward workers send each rollout on its own; an in-group strategy needs the
whole group. A :class:`CohortService` holds each rollout (a :class:`Member`) until its cohort is
complete, judges the cohort with the configured strategy and answers every member:

- a member names its group (``key``: veRL's ``uid``, OpenRLHF's prompt text) and the group's
  expected ``size`` (the rollout n); the first member's size and prompt count for the cohort;
- members with the same key fill a cohort of ``size`` in arrival order, then the next one opens:
  a prompt repeated in one step gives several cohorts;
- what a cohort's members get is :func:`~rmr1_plugins.rewards.groups.plan_group`'s rule: a
  cohort not complete ``group_timeout_s`` seconds after its first member arrived is judged with
  the members it has (``partial``; ``on_split="reference"``: each against its reference,
  ``"drop"``: the fallback, as the veRL manager asks); below two members, the member is judged
  against its reference (``alone``; no reference: the fallback reward); a group of one
  (validation, n = 1) is judged against its reference at once;
- **late members**: when a cohort closes at its deadline short of ``k`` members, the next ``k``
  members with its key that arrive within ``timeout_s`` of the close (``deadline="close"``:
  ``2 × group_timeout_s + timeout_s``) are its late members: each
  is answered at once, judged alone against its reference (``alone``, ``late``) or, without
  one, given the fallback (``no_reference``), never held for a new cohort. A key's later
  members open a new cohort as usual;
- **repeats**: a member with an ``id`` (its identity within the key) that was already received
  with the same prompt and response gets that member's answer, waiting for it while its cohort
  is open; it is never counted as a new member. With another response (veRL re-issues an
  interrupted rollout under its id) it is a new member: the old answer is dropped for that id
  (a held old member is still judged with its cohort). Answers of the last ``recent`` ids are
  kept;
- every cohort's pairs go to the shared batching service
  (:class:`~rmr1_plugins.rewards.service.RewardService`), so many cohorts, and reference
  samples, share engine calls; every member is answered exactly once, within ``timeout_s`` of
  its cohort's first member (the wait is capped at half of ``timeout_s``; rmr1 serve's rule) or,
  with ``deadline="close"`` (the veRL manager's), within ``timeout_s`` of its cohort's close
  (complete, or at the end of its ``group_timeout_s`` wait, which is not capped);
- members held or being judged are bounded by count (``max_pending``) and by their text's size
  (``reward.service.max_pending_bytes``): :class:`Overloaded` before one is accepted; a
  cohort's size is bounded by ``max_group_size``;
- **streaming** (``reward.group.stream_pairs``; :func:`streams`): while a cohort fills, each
  pair the strategy knows early
  (:meth:`~rmr1_plugins.rewards.strategies.Strategy.early_pairs`) goes to
  the batching service as soon as both of its members have arrived (identical text pairs once),
  queued behind the work of complete groups. When the cohort closes, its strategy is played as
  for the whole group; a pair already judged early (same prompt, same two texts in the same
  slots) takes its early verdict (kept without the judge's text), the others and later rounds
  are judged then. By default only strategies that draw no positions at random stream (their
  rewards are unchanged); with ``stream_pairs`` true the others take those positions from
  arrival order (:meth:`~rmr1_plugins.rewards.strategies.Strategy.streamed`: the pivot is the
  first arrival). A cohort closed short is judged by the same rule as without streaming; its
  early verdicts are reused by ``partial`` (never more judgments than it uses), and withdrawn
  with ``reference`` / ``drop`` (at most those ``partial`` would use are wasted); early pairs
  still queued when a cohort is answered are withdrawn. A re-issued member's early verdicts are
  ignored and its pairs with members already there are judged at the close, not sent again.

:class:`CohortTable` is the bookkeeping without I/O or clocks (times are passed in);
:class:`CohortService` drives it on an asyncio loop. No trainer is imported.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sys
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from rmr1_plugins.errors import RMR1Error
from rmr1_plugins.offload import off_loop
from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.rewards.engine import Group, GroupRewards, texts_of
from rmr1_plugins.rewards.groups import GroupPlan, SplitRule, plan_group, scoring
from rmr1_plugins.rewards.health import PREFIX as HEALTH_PREFIX
from rmr1_plugins.rewards.health import Tally
from rmr1_plugins.rewards.inputs import as_context, as_text
from rmr1_plugins.rewards.metrics import FALLBACK_KINDS, judged_metrics, sample_metrics
from rmr1_plugins.rewards.service import Failure, RewardService
from rmr1_plugins.rewards.strategies import Pair, Strategy
from rmr1_plugins.schema import PairResult, PairwiseExample, ParsedParts
from rmr1_plugins.scorer import Scorer

logger = logging.getLogger("rmr1_plugins.rewards.cohorts")
# What can happen to a member: judged with part of its group, judged alone against the
# reference, or one of the fallbacks (metrics.FALLBACK_KINDS; ``dropped`` with on_split="drop").
FALLBACKS = FALLBACK_KINDS  # kinds that give the fallback
KINDS = ("partial", "alone", *FALLBACKS)
SPLIT_RULES = ("partial", "reference", "drop")  # what a cohort closed short can get
RECENT = 16_384  # answered ids kept for repeats, and closed short cohorts kept for late members


def streams(stream_pairs: bool | None, strategy: Strategy) -> bool:
    """Whether cohorts judge ``strategy``'s pairs while they fill: ``stream_pairs`` true, or
    None (the default) and the strategy draws no positions at random (its rewards are then the
    same streamed or not). A strategy against the reference is judged at once anyway."""
    if strategy.needs_reference or stream_pairs is False:
        return False
    return stream_pairs is True or not strategy.draws_positions


def groups_samples(config: RewardConfig) -> bool:
    """Whether ``config`` asks for whole-group rewards: an in-group strategy, a group size > 1."""
    return not config.build_strategy().needs_reference and (config.group.size or 1) > 1


class Overloaded(RMR1Error, RuntimeError):
    """More members (or bytes) than the limits would be held; nothing was accepted."""


@dataclass(frozen=True)
class Member:
    """One rollout: its group, the group's expected size, the response, optionally a reference.

    ``prompt`` is a string or a chat message list (see :func:`~.inputs.as_context`); ``id``
    names the rollout within its key (a retry with the same id gets the same answer);
    ``on_split`` is what its cohort gets if it closes short (the first member's counts; None:
    the service's).
    """

    key: str
    size: int
    prompt: str | Sequence[Mapping[str, Any]]
    response: str
    reference: str | None = None
    clipped: bool = False  # the response was cut at max_response_chars
    id: str | None = None
    on_split: SplitRule | None = None


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
    nbytes: int = 0
    late: bool = False  # the late member of a cohort already closed, alone
    finished: bool = False  # answered; no longer held
    on_split: SplitRule | None = None  # its first member's; None: the service's
    early: dict[Any, Any] = field(default_factory=dict)  # the driver's early verdicts, by texts
    context: Any = None  # the prompt as judged, once streamed (False: not a valid prompt)

    @property
    def complete(self) -> bool:
        return len(self.responses) >= self.size

    @property
    def reference(self) -> str | None:
        return next((r for r in self.references if r is not None), None)


def text_bytes(value: Any) -> int:
    """The memory a member's text takes (strings, and the contents of chat turns)."""
    if isinstance(value, str):
        return sys.getsizeof(value)
    if isinstance(value, Mapping):
        return sum(text_bytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(text_bytes(v) for v in value)
    return 0


class CohortTable:
    """Open cohorts by key, oldest first; no clock, no I/O (``now`` is passed in).

    A cohort counts in :attr:`held` and :attr:`held_bytes` from its first member until
    :meth:`finish` (its members answered), so members being judged count too.
    """

    def __init__(
        self,
        group_timeout_s: float,
        max_pending: int = 4096,
        max_group_size: int = 256,
        *,
        max_bytes: int = 256 * 1024 * 1024,
        late_s: float | None = None,
        recent: int = RECENT,
    ) -> None:
        if group_timeout_s <= 0 or max_pending < 1 or max_group_size < 1 or max_bytes < 1:
            raise ValueError(
                "group_timeout_s, max_pending, max_bytes and max_group_size must be positive"
            )
        self.group_timeout_s = group_timeout_s
        self.max_pending = max_pending
        self.max_group_size = max_group_size
        self.max_bytes = max_bytes
        self.late_s = 2 * group_timeout_s if late_s is None else late_s
        self.recent = recent
        self.held = 0  # members accepted and not yet answered
        self.held_bytes = 0
        self._open: OrderedDict[str, Cohort] = OrderedDict()  # opening order = deadline order
        self._short: OrderedDict[str, tuple[int, float]] = OrderedDict()  # key: (missing, until)

    def __len__(self) -> int:
        return len(self._open)

    def check_size(self, size: Any) -> None:
        """Raise ValueError for a group size that is not a positive integer up to the limit."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"group size must be a positive integer, got {size!r}")
        if size > self.max_group_size:
            raise ValueError(f"group size {size} is over max_group_size {self.max_group_size}")

    def room(self, count: int, nbytes: int) -> None:
        """Raise :class:`Overloaded` unless ``count`` more members of ``nbytes`` fit now, and
        ValueError when they never could."""
        if nbytes > self.max_bytes:
            raise ValueError(
                f"{nbytes} bytes of text, more than reward.service.max_pending_bytes "
                f"{self.max_bytes}: "
                "it can never be accepted"
            )
        if self.held + count > self.max_pending:
            raise Overloaded(f"{self.held} members waiting (limit {self.max_pending})")
        if self.held_bytes + nbytes > self.max_bytes:
            raise Overloaded(
                f"{self.held_bytes} bytes of text waiting, {nbytes} more would pass "
                f"reward.service.max_pending_bytes {self.max_bytes}"
            )

    def cost(self, member: Member) -> int:
        """The bytes ``member`` adds: its texts, and its prompt when it opens a cohort."""
        opens = _digest(member.key) not in self._open
        texts = text_bytes(member.response) + text_bytes(member.reference)
        return texts + (text_bytes(member.prompt) if opens else 0)

    def check(self, member: Member) -> int:
        """Raise before accepting ``member`` (ValueError, :class:`Overloaded`); its bytes."""
        self.check_size(member.size)
        nbytes = self.cost(member)
        self.room(1, nbytes)
        return nbytes

    def add(self, member: Member, ticket: Any, now: float) -> Cohort | None:
        """Hold ``member``; returns its cohort when this member closed it: complete, or the
        member is late (its cohort closed short at its deadline) and is judged alone."""
        nbytes = self.check(member)
        key = _digest(member.key)
        cohort = self._open.get(key)
        if cohort is None and self._late(key, now):
            cohort = Cohort(
                key, member.size, now, member.prompt, late=True, on_split=member.on_split
            )
            self._hold(cohort, member, ticket, nbytes)
            return cohort
        if cohort is None:
            cohort = Cohort(key, member.size, now, member.prompt, on_split=member.on_split)
            self._open[key] = cohort
        self._hold(cohort, member, ticket, nbytes)
        if cohort.complete:
            del self._open[key]
            return cohort
        return None

    def due(self, now: float) -> list[Cohort]:
        """Close and return the cohorts whose wait ended by ``now`` (oldest first)."""
        closed = []
        while self._open:
            cohort = next(iter(self._open.values()))
            if cohort.opened + self.group_timeout_s > now:
                break
            del self._open[cohort.key]
            missing = cohort.size - len(cohort.responses)
            self._short[cohort.key] = (missing, now + self.late_s)
            self._short.move_to_end(cohort.key)
            while len(self._short) > self.recent:
                self._short.popitem(last=False)
            closed.append(cohort)
        return closed

    def next_deadline(self) -> float | None:
        """When the oldest open cohort's wait ends, or None."""
        for cohort in self._open.values():
            return cohort.opened + self.group_timeout_s
        return None

    def open_cohort(self, key: str) -> Cohort | None:
        """The open cohort of ``key`` (a member's key), or None."""
        return self._open.get(_digest(key))

    def is_open(self, cohort: Cohort) -> bool:
        """Whether ``cohort`` still waits for members."""
        return self._open.get(cohort.key) is cohort

    def drain(self) -> list[Cohort]:
        """Close and return every open cohort."""
        closed = list(self._open.values())
        self._open.clear()
        return closed

    def finish(self, cohort: Cohort) -> None:
        """The cohort's members were answered: they no longer count as held (once)."""
        if not cohort.finished:
            cohort.finished = True
            self.held -= len(cohort.responses)
            self.held_bytes -= cohort.nbytes

    def replace(self, member: Member, old_ticket: Any, ticket: Any) -> bool:
        """Put ``member`` in the place of the member holding ``old_ticket`` in its open cohort;
        False if that member is in no open cohort (its cohort closed or was never held). Raises
        as :meth:`room` when its larger text does not fit (nothing changed)."""
        cohort = self._open.get(_digest(member.key))
        if cohort is None or not any(t is old_ticket for t in cohort.tickets):
            return False
        index = next(i for i, t in enumerate(cohort.tickets) if t is old_ticket)
        old = text_bytes(cohort.responses[index]) + text_bytes(cohort.references[index])
        delta = self.cost(member) - old  # the cohort is open: the member's texts alone
        if delta > 0:
            self.room(0, delta)  # raises before changing anything, as for a new member
        cohort.responses[index] = member.response
        cohort.references[index] = member.reference
        cohort.clipped[index] = member.clipped
        cohort.tickets[index] = ticket
        cohort.nbytes += delta
        self.held_bytes += delta
        return True

    def _hold(self, cohort: Cohort, member: Member, ticket: Any, nbytes: int) -> None:
        cohort.responses.append(member.response)
        cohort.references.append(member.reference)
        cohort.clipped.append(member.clipped)
        cohort.tickets.append(ticket)
        cohort.nbytes += nbytes
        self.held += 1
        self.held_bytes += nbytes

    def _late(self, key: str, now: float) -> bool:
        """Whether a member of ``key`` is owed to a cohort that closed short (and count it)."""
        found = self._short.get(key)
        if found is None:
            return False
        missing, until = found
        if now > until or missing < 1:
            del self._short[key]
            return False
        if missing == 1:
            del self._short[key]
        else:
            self._short[key] = (missing - 1, until)
        return True


def _digest(*parts: str) -> str:
    """A fixed-size key: a prompt text can be long, and only one copy of it is kept."""
    payload = "\x00".join(parts).encode("utf-8", "surrogatepass")
    return hashlib.sha256(payload).hexdigest()


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
        name = None if member.id is None else _digest(member.key, member.id)
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
            self._stream(cohort, [len(cohort.responses) - 1])
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

    def _stream(
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
        # the latest time its cohort could still use them (_judge's deadline)
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

    def _start(self, cohort: Cohort) -> None:
        if cohort.early:
            try:
                in_group = self._plan(cohort).kind in ("whole", "partial")
            except ValueError:  # _rewards meets it again and answers with the fallback
                in_group = False
            if in_group:
                self.judge.hurry(id(cohort))  # it waits for them now
            else:  # judged against the reference or the fallback: in-group pairs are unused
                self._withdraw(cohort)
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

    @staticmethod
    def _withdraw(cohort: Cohort) -> None:
        """Cancel the cohort's early pairs: queued ones are never judged, verdicts dropped."""
        for task, _ in cohort.early.values():
            task.cancel()
        cohort.early = {}

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
            results = await self._verdicts(cohort, examples, remaining)
            failed = next((r for r in results if isinstance(r, Failure)), None)
            if failed is not None:
                return [self._fallback(failed.kind, failed.message)]
            await off_loop(run.feed, [r for r in results if not isinstance(r, Failure)])
        [judged] = run.rewards()
        return await off_loop(self._members, judged, plan, cohort, group)

    async def _verdicts(
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
        self._withdraw(cohort)  # unused early pairs still queued
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
    return _digest(text, member.response)


def _verdict_only(result: PairResult | Failure) -> PairResult | Failure:
    """``result`` without its judgments' text (completion, parsed sections): what the engine
    and the metrics read (verdicts, votes, slots, finish reasons, probabilities) is kept."""
    if isinstance(result, Failure):
        return result
    slim = [
        j.model_copy(update={"completion": "", "parts": ParsedParts()}) for j in result.judgments
    ]
    return result.model_copy(update={"judgments": slim})


def _copy(reward: CohortReward) -> CohortReward:
    metrics = None if reward.metrics is None else dict(reward.metrics)
    return replace(reward, health=dict(reward.health), metrics=metrics)
