"""The cohorts a :class:`~rmr1_plugins.rewards.cohorts.CohortService` holds, without I/O or clocks.

A :class:`Member` (one rollout) names its group (``key``: veRL's ``uid``, OpenRLHF's prompt text)
and the group's expected ``size`` (the rollout n); the first member's size and prompt count for the
cohort. Members with the same key fill a :class:`Cohort` of ``size`` in arrival order, then the
next one opens: a prompt repeated in one step gives several cohorts. A cohort not complete
``group_timeout_s`` after its first member closes short (:meth:`CohortTable.due`); the next
members it misses, within ``late_s`` of the close, are its late members, each a cohort of its own.
Members held or being judged are bounded by count and by their text's size: :class:`Overloaded`
before one is accepted. Times are passed in (``now``). See docs/concepts/cohorts.md.
"""

from __future__ import annotations

import hashlib
import sys
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rmr1_plugins.errors import RMR1Error
from rmr1_plugins.rewards.groups import SplitRule

RECENT = 16_384  # answered ids kept for repeats, and closed short cohorts kept for late members


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
                f"{self.max_bytes}: it can never be accepted"
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
        opens = digest(member.key) not in self._open
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
        key = digest(member.key)
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
        return self._open.get(digest(key))

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
        cohort = self._open.get(digest(member.key))
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


def digest(*parts: str) -> str:
    """A fixed-size key: a prompt text can be long, and only one copy of it is kept."""
    payload = "\x00".join(parts).encode("utf-8", "surrogatepass")
    return hashlib.sha256(payload).hexdigest()
