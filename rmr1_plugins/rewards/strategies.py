"""Strategies: which pairs of a group to judge, and how their outcomes become rewards.

================  ==================================  ===============  ======================
strategy          comparisons for a group of G        backend calls    reward
================  ==================================  ===============  ======================
``reference``     G (each completion vs the           1                P(win vs reference),
                  group's reference answer)                            in [0, 1]
``pivot``         G − 1 (vs one completion drawn      1                P(win vs pivot) in
                  from the group; seeded)                              [0, 1]; pivot 0.5
``circular``      G (i vs i+1, so each completion     1                mean of its 2 outcomes,
                  sits once in each slot)                              in [0, 1]
``round-robin``   G(G − 1)/2 (all pairs)              1                win rate in [0, 1]
``bradley-terry`` G(G − 1)/2 (all pairs)              1                centred BT log-strength,
                                                                       within ±(G − 1)·log(1 +
                                                                       2/prior)
``knockout``      G − 1 (single elimination,          ⌈log2 G⌉         rounds survived / rounds,
                  seeded bracket)                                      in [0, 1]; winner 1
``adaptive``      ``budget`` (default 2G): a          1 + ⌈(budget −   fitted BT strength with
                  circular round, then pairs that     G) / ⌊G/2⌋⌉      a slot-A term
                  are least certain                   (G > 2)          (see ``adaptive.py``),
                                                                       within ±2·budget/prior
================  ==================================  ===============  ======================

Every strategy is total: any mix of verdicts, ties, excluded and double-loss comparisons gives
finite rewards (or ``None``) within the range above. The engine gives identical completions of a
group the mean of their rewards, and a strategy that raises anyway costs only its own group.

A strategy is a generator (:meth:`Strategy.play`): it yields rounds of pairs and receives their
outcomes, without I/O, so :mod:`rmr1_plugins.rewards.engine` can batch every group's round into
one judge call. Strategies are registered plugins (``rmr1 plugins`` lists them).

A group that arrives one completion at a time (a cohort, :mod:`rmr1_plugins.rewards.cohorts`)
can be judged while it fills: :meth:`Strategy.early_pairs` names the pairs of the first round
that the arrival of completion ``i`` makes known (``reference``: ``i`` against the reference;
``pivot``: ``i`` against the first arrival; ``circular``: ``i`` against ``i − 1``, and the
last one against the first; ``round-robin``, ``bradley-terry``: ``i`` against every earlier
one; ``knockout``: odd ``i`` against ``i − 1``; ``adaptive``: its opening circle, as
``circular``, within the budget). A strategy that draws positions at random (the pivot, the
bracket, the adaptive opening's shuffle) takes them from the group's order instead in
:meth:`Strategy.streamed`, so they are known before the group is complete.
"""

from __future__ import annotations

import copy
import math
import random
from abc import ABC, abstractmethod
from collections.abc import Generator, Mapping
from typing import Any, ClassVar

from rmr1_plugins.plugins import get_strategy

REFERENCE = -1  # the index that stands for the group's reference answer in a pair


Pair = tuple[int, int]


Scores = tuple[float, float]  # credit to the first and to the second of a pair


Play = Generator[list[Pair], list[Scores | None], list[float | None]]


class Strategy(ABC):
    """Decides which pairs to judge and turns their outcomes into rewards.

    :meth:`play` is a generator: it yields a round of pairs (indices into the group, or
    :data:`REFERENCE`), receives one :data:`Scores` (or ``None`` for excluded) per pair, and
    finally returns the rewards. Non-adaptive strategies play one round.
    """

    name: ClassVar[str]
    needs_reference: ClassVar[bool] = False
    bounded: ClassVar[bool] = True  # rewards lie in [0, 1]
    draws_positions: ClassVar[bool] = False  # its first round depends on ``rng``
    in_order = False  # (streamed) positions drawn at random are taken from the group's order

    def early_pairs(self, index: int, size: int) -> list[Pair]:
        """The pairs of the first round of :meth:`play` for a group of ``size`` between
        completion ``index`` and earlier ones (or the reference): known once the first
        ``index + 1`` completions exist, whatever the verdicts. None by default (and for a
        strategy that draws positions, unless :meth:`streamed`)."""
        return []

    def streamed(self) -> Strategy:
        """This strategy with the positions it draws at random taken from the group's order
        (the pivot is the first completion, the bracket and the adaptive opening follow the
        order), so that :meth:`early_pairs` can name them; itself if it draws none."""
        if not self.draws_positions or self.in_order:
            return self
        twin = copy.copy(self)
        twin.in_order = True
        return twin

    @abstractmethod
    def play(self, size: int, rng: random.Random) -> Play:
        """Play a group of ``size`` completions."""

    @abstractmethod
    def comparisons(self, size: int) -> int:
        """How many comparisons a group of ``size`` needs (at most, for ``knockout``)."""


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _credit(size: int, pairs: list[Pair], outcomes: list[Scores | None]) -> list[list[float]]:
    """Each completion's credits from the pairs it took part in (excluded pairs give none)."""
    credit: list[list[float]] = [[] for _ in range(size)]
    for (first, second), scores in zip(pairs, outcomes, strict=True):
        if scores is None:
            continue
        if first != REFERENCE:
            credit[first].append(scores[0])
        if second != REFERENCE:
            credit[second].append(scores[1])
    return credit


class ReferenceStrategy(Strategy):
    """Each completion (slot A) against the group's reference answer (slot B)."""

    name = "reference"
    needs_reference = True

    def early_pairs(self, index: int, size: int) -> list[Pair]:
        return [(index, REFERENCE)]

    def play(self, size: int, rng: random.Random) -> Play:
        pairs = [(i, REFERENCE) for i in range(size)]
        outcomes = yield pairs
        return [_mean(c) for c in _credit(size, pairs, outcomes)]

    def comparisons(self, size: int) -> int:
        return size


class PivotStrategy(Strategy):
    """Each completion against one completion of the group drawn at random (seeded).

    The pivot's own reward is 0.5, a tie with itself (Writing-Zero's bootstrapped reference).
    :meth:`streamed`: the pivot is the first completion (a cohort's first arrival).
    """

    name = "pivot"
    draws_positions = True

    def early_pairs(self, index: int, size: int) -> list[Pair]:
        return [(index, 0)] if self.in_order and index > 0 else []

    def play(self, size: int, rng: random.Random) -> Play:
        pivot = 0 if self.in_order else rng.randrange(size)
        pairs = [(i, pivot) for i in range(size) if i != pivot]
        outcomes = yield pairs
        credit = _credit(size, pairs, outcomes)
        rewards: list[float | None] = []
        for i in range(size):
            rewards.append(0.5 if i == pivot else (credit[i][0] if credit[i] else None))
        return rewards

    def comparisons(self, size: int) -> int:
        return size - 1


class CircularStrategy(Strategy):
    """Completion i against i+1 (mod G): each is judged twice, once in each slot."""

    name = "circular"

    def early_pairs(self, index: int, size: int) -> list[Pair]:
        pairs = [(index - 1, index)] if index > 0 else []
        return pairs + ([(index, 0)] if index == size - 1 and size > 1 else [])

    def play(self, size: int, rng: random.Random) -> Play:
        if size < 2:
            return [None] * size
        pairs = [(i, (i + 1) % size) for i in range(size)]
        outcomes = yield pairs
        return [_mean(c) for c in _credit(size, pairs, outcomes)]

    def comparisons(self, size: int) -> int:
        return size if size > 1 else 0


def all_pairs(size: int) -> list[Pair]:
    """Every unordered pair once; slots alternate so each completion sits in A about half of the
    time."""
    return [(i, j) if (i + j) % 2 == 0 else (j, i) for i in range(size) for j in range(i + 1, size)]


def newcomer_pairs(index: int) -> list[Pair]:
    """The pairs of :func:`all_pairs` between completion ``index`` and the ones before it."""
    return [(i, index) if (i + index) % 2 == 0 else (index, i) for i in range(index)]


class RoundRobinStrategy(Strategy):
    """All pairs; the reward is the win rate (ties count one half)."""

    name = "round-robin"

    def early_pairs(self, index: int, size: int) -> list[Pair]:
        return newcomer_pairs(index)

    def play(self, size: int, rng: random.Random) -> Play:
        pairs = all_pairs(size)
        outcomes = yield pairs
        return [_mean(c) for c in _credit(size, pairs, outcomes)]

    def comparisons(self, size: int) -> int:
        return size * (size - 1) // 2


class BradleyTerryStrategy(Strategy):
    """All pairs, then a Bradley–Terry fit; the reward is the centred log-strength.

    Rewards ``r`` satisfy P(i beats j) = sigmoid(r_i − r_j) under the fitted model. ``prior`` adds
    that many virtual games (half won) against a strength-1 anchor, so an unbeaten completion
    still gets a finite reward. A double loss (``on_unparsed="loss"``) says nothing about which
    of the two is better: it counts as a game each of them lost to the anchor. Fitted with
    Hunter's MM iterations (deterministic); rewards are clipped to ±(G − 1)·log(1 + 2/prior)
    (:meth:`bound`), which only a fit cut off by ``max_iter`` could reach.
    """

    name = "bradley-terry"
    bounded = False

    def early_pairs(self, index: int, size: int) -> list[Pair]:
        return newcomer_pairs(index)

    def __init__(self, prior: float = 1.0, max_iter: int = 500, tol: float = 1e-10) -> None:
        if not (prior > 0 and math.isfinite(prior)):
            raise ValueError(f"prior must be > 0, got {prior}")
        self.prior, self.max_iter, self.tol = prior, max_iter, tol

    def bound(self, size: int) -> float:
        """The largest reward magnitude in a group of ``size``."""
        return max(size - 1, 1) * math.log1p(2 / self.prior)

    def play(self, size: int, rng: random.Random) -> Play:
        pairs = all_pairs(size)
        outcomes = yield pairs
        return self.fit(size, pairs, outcomes)

    def fit(
        self, size: int, pairs: list[Pair], outcomes: list[Scores | None]
    ) -> list[float | None]:
        wins = [self.prior / 2] * size
        anchor = [self.prior] * size  # games against the strength-1 anchor
        games: list[dict[int, int]] = [{} for _ in range(size)]
        played = [False] * size
        for (i, j), scores in zip(pairs, outcomes, strict=True):
            if scores is None:
                continue
            played[i] = played[j] = True
            if scores[0] + scores[1] <= 0:  # a double loss: both lost to the anchor
                anchor[i] += 1
                anchor[j] += 1
                continue
            wins[i] += scores[0]
            wins[j] += scores[1]
            games[i][j] = games[i].get(j, 0) + 1
            games[j][i] = games[j].get(i, 0) + 1
        strength = [1.0] * size
        for _ in range(self.max_iter):
            new = [
                wins[i]
                / (
                    anchor[i] / (strength[i] + 1.0)
                    + sum(n / (strength[i] + strength[j]) for j, n in games[i].items())
                )
                for i in range(size)
            ]
            change = max(
                (abs(math.log(a / b)) for a, b in zip(new, strength, strict=True)), default=0
            )
            strength = new
            if change < self.tol:
                break
        counted = [i for i in range(size) if played[i]]
        if not counted:
            return [None] * size
        centre = sum(math.log(strength[i]) for i in counted) / len(counted)
        bound = self.bound(size)
        return [
            min(max(math.log(strength[i]) - centre, -bound), bound) if played[i] else None
            for i in range(size)
        ]

    def comparisons(self, size: int) -> int:
        return size * (size - 1) // 2


class KnockoutStrategy(Strategy):
    """Single elimination over a seeded bracket; the reward is rounds survived / rounds.

    The winner of a match has the higher score; a tie goes to the one listed first in the bracket;
    a double loss (``on_unparsed="loss"``) eliminates both, and an excluded match removes both with
    reward ``None``. An odd one out gets a bye. The last completion standing gets 1.0.
    :meth:`streamed`: the bracket is the group's order (``0`` v ``1``, ``2`` v ``3``, ...).
    """

    name = "knockout"
    draws_positions = True

    def early_pairs(self, index: int, size: int) -> list[Pair]:
        return [(index - 1, index)] if self.in_order and index % 2 and size > 1 else []

    def play(self, size: int, rng: random.Random) -> Play:
        rounds = math.ceil(math.log2(size)) if size > 1 else 0
        survived: list[float | None] = [0.0] * size
        alive = list(range(size))
        if not self.in_order:
            rng.shuffle(alive)
        for round_ in range(rounds):
            if len(alive) < 2:
                break
            pairs = [(alive[k], alive[k + 1]) for k in range(0, len(alive) - 1, 2)]
            outcomes = yield pairs
            advancing = [alive[-1]] if len(alive) % 2 else []  # the bye
            for (first, second), scores in zip(pairs, outcomes, strict=True):
                if scores is None:
                    survived[first] = survived[second] = None
                elif scores[0] >= scores[1] and scores[0] > 0:
                    advancing.append(first)
                elif scores[1] > scores[0]:
                    advancing.append(second)
            for index in advancing:
                survived[index] = round_ + 1.0
            # keep bracket order: byes and winners in the order they were listed
            alive = [i for i in alive if i in advancing]
        if len(alive) == 1:
            survived[alive[0]] = float(rounds)
        return [None if s is None else (s / rounds if rounds else 1.0) for s in survived]

    def comparisons(self, size: int) -> int:
        return max(size - 1, 0)


def resolve_strategy(
    strategy: str | Strategy, options: Mapping[str, Any] | None = None
) -> Strategy:
    """A strategy instance from a registered name (see ``rmr1 plugins``) or an instance.

    ``options`` are the strategy's constructor arguments (``reward.strategy_options``, e.g.
    ``{"budget": 16}`` for ``adaptive``); a wrong one is a ``ValueError`` naming the strategy.
    """
    if isinstance(strategy, Strategy):
        if options:
            raise ValueError("strategy options need a strategy name, not an instance")
        return strategy
    return get_strategy(strategy, **dict(options or {}))
