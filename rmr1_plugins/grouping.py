"""Pairwise verdicts → one scalar reward per completion of a prompt group.

A policy trainer samples a *group* of completions per prompt and wants one number for each; an
RM-R1 judge only says which of two answers is better. A strategy decides which pairs to judge and
how to turn their outcomes into rewards:

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
``bradley-terry`` G(G − 1)/2 (all pairs)              1                centred BT log-strength
``knockout``      G − 1 (single elimination,          ⌈log2 G⌉         rounds survived / rounds,
                  seeded bracket)                                      in [0, 1]; winner 1
``adaptive``      ``budget`` (default 2G): a          1 + ⌈(budget −   fitted BT strength with
                  circular round, then pairs that     G) / ⌊G/2⌋⌉      a slot-A term
                  are least certain                   (G > 2)          (see ``adaptive.py``)
================  ==================================  ===============  ======================

Each comparison costs one judgment per order and sample: ×2 with ``both_orders`` (or a scorer
built with ``order="both"``), ×``sampling.n`` when sampling several verdicts. A comparison of two
identical texts is a tie without asking the judge. All comparisons of one round, over every group
passed in, go to the backend as one batch (:func:`score_groups`).

The outcome of a comparison is the share of parsed votes for the first completion (1 win, 0 loss,
0.5 when the two orders disagree), or with ``outcome="soft"`` the judge's verdict probability
where the backend reports one. A comparison where no vote parses follows ``on_unparsed``:
``"tie"`` (0.5 to both), ``"loss"`` (0 to both: neither earns credit from a broken judgment) or
``"exclude"`` (dropped; a completion left with no outcome gets reward ``None``). Rewards are
deterministic given ``seed`` (pivot choice and brackets are seeded by ``seed`` and the group's
text), and for a greedy judge the same batch gives the same rewards. A group of fewer than two
completions gets ``None`` from every strategy but ``reference``: there is nothing to compare.

Scale: GRPO and RLOO subtract the group mean (and GRPO by default divides by the group's standard
deviation), so a win rate in [0, 1] can be used as is; only the ordering and spread inside a group
matter.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
from abc import ABC, abstractmethod
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from rmr1_plugins.schema import Message, PairResult, PairwiseExample

OnUnparsed = Literal["tie", "loss", "exclude"]
Outcome = Literal["hard", "soft"]
REFERENCE = -1  # the index that stands for the group's reference answer in a pair

Pair = tuple[int, int]
Scores = tuple[float, float]  # credit to the first and to the second of a pair
Play = Generator[list[Pair], list[Scores | None], list[float | None]]


@dataclass
class Group:
    """The completions of one prompt.

    ``prompt`` is a string (one user turn) or a chat message list; see :func:`as_context`.
    ``completions`` are strings or assistant message lists (see :func:`as_text`).
    """

    prompt: str | Sequence[Mapping[str, Any]]
    completions: Sequence[Any]
    reference: str | None = None
    id: str | None = None


@dataclass(frozen=True)
class Comparison:
    """One pair judged (or settled without the judge, ``result=None``, for identical texts)."""

    first: int
    second: int
    scores: Scores | None  # None: excluded (unparsed with on_unparsed="exclude")
    result: PairResult | None = None

    @property
    def parsed(self) -> bool:
        """Whether the judge gave at least one verdict (always true for identical texts)."""
        return self.result is None or self.result.votes["A"] + self.result.votes["B"] > 0


@dataclass
class GroupRewards:
    """The rewards of one group and what they cost."""

    rewards: list[float | None]
    comparisons: list[Comparison] = field(default_factory=list)
    error: str | None = None  # why the group was skipped (``skip_invalid=True``), else None

    @property
    def judgments(self) -> int:
        """Judge completions used (orders × samples per comparison; cached ones included)."""
        return sum(len(c.result.judgments) for c in self.comparisons if c.result is not None)

    @property
    def unparsed(self) -> int:
        """Comparisons where no judgment had a parseable verdict."""
        return sum(not c.parsed for c in self.comparisons)

    @property
    def orders_agree(self) -> tuple[int, int]:
        """(comparisons whose two orders agreed, comparisons judged in both orders)."""
        judged = [c.result.orders_agree for c in self.comparisons if c.result is not None]
        both = [agree for agree in judged if agree is not None]
        return sum(both), len(both)

    def involving(self, index: int) -> list[Comparison]:
        """The comparisons completion ``index`` took part in, in the order they were made."""
        return [c for c in self.comparisons if index in (c.first, c.second)]

    def summary(self, index: int) -> str:
        """One line per comparison of completion ``index``: opponent, outcome, votes."""
        lines = []
        for c in self.involving(index):
            other = c.second if c.first == index else c.first
            name = "reference" if other == REFERENCE else f"#{other}"
            mine = None if c.scores is None else c.scores[0 if c.first == index else 1]
            outcome = "excluded" if mine is None else f"{mine:.2f}"
            if c.result is None:
                lines.append(f"vs {name}: {outcome} (identical texts, not judged)")
                continue
            votes = c.result.votes
            mine_v, theirs_v = (
                (votes["A"], votes["B"]) if c.first == index else (votes["B"], votes["A"])
            )
            agree = {True: ", orders agree", False: ", orders disagree", None: ""}
            lines.append(
                f"vs {name}: {outcome} (votes {mine_v}-{theirs_v}, unparsed {votes['none']}"
                f"{agree[c.result.orders_agree]})"
            )
        return "\n".join(lines)


class Strategy(ABC):
    """Decides which pairs to judge and turns their outcomes into rewards.

    :meth:`play` is a generator: it yields a round of pairs (indices into the group, or
    :data:`REFERENCE`), receives one :data:`Scores` (or ``None`` for excluded) per pair, and
    finally returns the rewards. Non-adaptive strategies play one round.
    """

    name: ClassVar[str]
    needs_reference: ClassVar[bool] = False
    bounded: ClassVar[bool] = True  # rewards lie in [0, 1]

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

    def play(self, size: int, rng: random.Random) -> Play:
        pairs = [(i, REFERENCE) for i in range(size)]
        outcomes = yield pairs
        return [_mean(c) for c in _credit(size, pairs, outcomes)]

    def comparisons(self, size: int) -> int:
        return size


class PivotStrategy(Strategy):
    """Each completion against one completion of the group drawn at random (seeded).

    The pivot's own reward is 0.5, a tie with itself (Writing-Zero's bootstrapped reference).
    """

    name = "pivot"

    def play(self, size: int, rng: random.Random) -> Play:
        pivot = rng.randrange(size)
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


class RoundRobinStrategy(Strategy):
    """All pairs; the reward is the win rate (ties count one half)."""

    name = "round-robin"

    def play(self, size: int, rng: random.Random) -> Play:
        pairs = all_pairs(size)
        outcomes = yield pairs
        return [_mean(c) for c in _credit(size, pairs, outcomes)]

    def comparisons(self, size: int) -> int:
        return size * (size - 1) // 2


class BradleyTerryStrategy(Strategy):
    """All pairs, then a Bradley–Terry fit; the reward is the centred log-strength.

    Rewards ``r`` satisfy P(i beats j) = sigmoid(r_i − r_j) under the fitted model. ``prior`` adds
    that many virtual games (half won) against a strength-1 opponent, so an unbeaten completion
    still gets a finite reward. Fitted with Hunter's MM iterations (deterministic).
    """

    name = "bradley-terry"
    bounded = False

    def __init__(self, prior: float = 1.0, max_iter: int = 500, tol: float = 1e-10) -> None:
        if prior <= 0:
            raise ValueError(f"prior must be > 0, got {prior}")
        self.prior, self.max_iter, self.tol = prior, max_iter, tol

    def play(self, size: int, rng: random.Random) -> Play:
        pairs = all_pairs(size)
        outcomes = yield pairs
        return self.fit(size, pairs, outcomes)

    def fit(
        self, size: int, pairs: list[Pair], outcomes: list[Scores | None]
    ) -> list[float | None]:
        wins = [self.prior / 2] * size
        games: list[dict[int, int]] = [{} for _ in range(size)]
        for (i, j), scores in zip(pairs, outcomes, strict=True):
            if scores is None:
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
                    self.prior / (strength[i] + 1.0)
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
        played = [i for i in range(size) if games[i]]
        if not played:
            return [None] * size
        centre = sum(math.log(strength[i]) for i in played) / len(played)
        return [math.log(strength[i]) - centre if games[i] else None for i in range(size)]

    def comparisons(self, size: int) -> int:
        return size * (size - 1) // 2


class KnockoutStrategy(Strategy):
    """Single elimination over a seeded bracket; the reward is rounds survived / rounds.

    The winner of a match has the higher score; a tie goes to the one listed first in the bracket;
    a double loss (``on_unparsed="loss"``) eliminates both, and an excluded match removes both with
    reward ``None``. An odd one out gets a bye. The last completion standing gets 1.0.
    """

    name = "knockout"

    def play(self, size: int, rng: random.Random) -> Play:
        rounds = math.ceil(math.log2(size)) if size > 1 else 0
        survived: list[float | None] = [0.0] * size
        alive = list(range(size))
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


BUILTIN_STRATEGIES: dict[str, str] = {
    "reference": "rmr1_plugins.grouping:ReferenceStrategy",
    "pivot": "rmr1_plugins.grouping:PivotStrategy",
    "circular": "rmr1_plugins.grouping:CircularStrategy",
    "round-robin": "rmr1_plugins.grouping:RoundRobinStrategy",
    "bradley-terry": "rmr1_plugins.grouping:BradleyTerryStrategy",
    "knockout": "rmr1_plugins.grouping:KnockoutStrategy",
    "adaptive": "rmr1_plugins.adaptive:AdaptiveStrategy",
}


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
    from rmr1_plugins.plugins import get_strategy

    target = get_strategy(strategy)
    if not isinstance(target, type):
        if options:
            raise ValueError(f"strategy {strategy!r} is an instance and takes no options")
        return target
    try:
        return target(**dict(options or {}))
    except TypeError as error:
        raise ValueError(f"strategy {strategy!r}: bad strategy_options: {error}") from None


def as_context(prompt: str | Sequence[Mapping[str, Any]]) -> list[Message]:
    """The judge's context for a policy prompt.

    A string is one user turn. A message list is kept, except that system (and developer) turns
    are folded into the next user turn, because RM-R1 prompts only have user and assistant turns,
    and list contents keep their text parts. The last turn must be a user turn; other roles
    (``tool``) are a ``ValueError``.
    """
    if isinstance(prompt, str):
        return [Message(role="user", content=prompt)]
    context: list[Message] = []
    pending_system: list[str] = []
    for index, message in enumerate(prompt):
        if not isinstance(message, Mapping) or "role" not in message:
            raise ValueError(
                f"prompt message {index} must be a mapping with a 'role', got {message!r}"
            )
        role, content = message["role"], _content_text(message.get("content"))
        if role in ("system", "developer"):
            pending_system.append(content)
            continue
        if role not in ("user", "assistant"):
            raise ValueError(
                f"prompt message {index} has role {role!r}; the judge sees only "
                "user and assistant turns"
            )
        if role == "user" and pending_system:
            content = "\n\n".join([*pending_system, content])
            pending_system = []
        context.append(Message(role=role, content=content))
    if not context or context[-1].role != "user":
        raise ValueError("the prompt must end with a user turn")
    return context


def texts_of(group: Group) -> list[str]:
    """The group's completions as judged, then its reference (index :data:`REFERENCE`, -1)."""
    return [*map(as_text, group.completions), str(group.reference)]


def as_text(completion: Any) -> str:
    """A completion as text: a string, or the assistant contents of a message list, joined."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and all(isinstance(m, Mapping) for m in completion):
        return "\n".join(
            _content_text(m.get("content")) for m in completion if m.get("role") == "assistant"
        )
    raise ValueError(
        f"a completion must be a string or a message list, got {type(completion).__name__}"
    )


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):  # multimodal content parts: keep the text ones
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return str(content)


def outcome_scores(
    result: PairResult, on_unparsed: OnUnparsed, outcome: Outcome = "hard"
) -> Scores | None:
    """The credit a judged pair gives to its first and second response.

    ``hard``: the share of parsed votes. ``soft``: the judge's verdict probability
    (``result.prob_a``, averaged over orders and samples) where the backend reported one, else
    the vote share.
    """
    if outcome == "soft" and result.prob_a is not None:
        return result.prob_a, 1.0 - result.prob_a
    a, b = result.votes["A"], result.votes["B"]
    if a + b:
        return a / (a + b), b / (a + b)
    if on_unparsed == "tie":
        return 0.5, 0.5
    if on_unparsed == "loss":
        return 0.0, 0.0
    return None


def group_seed(seed: int, group: Group) -> int:
    """A seed for one group's random choices, from ``seed`` and the group's text."""
    prompt = group.prompt if isinstance(group.prompt, str) else [dict(m) for m in group.prompt]
    payload = json.dumps([seed, prompt, [as_text(c) for c in group.completions]], default=str)
    return int.from_bytes(hashlib.sha256(payload.encode()).digest()[:8], "big")


class GroupScoring:
    """The state of scoring several groups round by round (used by :func:`score_groups`).

    Call :meth:`examples` for the next round's pairs, judge them in one batch, pass the results
    to :meth:`feed`, and repeat until :attr:`done`; :attr:`results` then holds the rewards.
    """

    def __init__(
        self,
        groups: Sequence[Group],
        strategy: str | Strategy = "round-robin",
        *,
        on_unparsed: OnUnparsed = "tie",
        seed: int = 0,
        skip_invalid: bool = False,
        outcome: Outcome = "hard",
    ) -> None:
        if on_unparsed not in ("tie", "loss", "exclude"):
            raise ValueError(f"on_unparsed must be 'tie', 'loss' or 'exclude', got {on_unparsed!r}")
        if outcome not in ("hard", "soft"):
            raise ValueError(f"outcome must be 'hard' or 'soft', got {outcome!r}")
        self.strategy = resolve_strategy(strategy)
        self.on_unparsed = on_unparsed
        self.outcome = outcome
        self.groups = list(groups)
        self.results: list[GroupRewards | None] = [None] * len(self.groups)
        self._contexts: list[list[Message]] = []
        self._texts: list[list[str]] = []
        self._comparisons: list[list[Comparison]] = [[] for _ in self.groups]
        self._games: dict[int, Play] = {}
        self._pairs: dict[int, list[Pair]] = {}
        for index, group in enumerate(self.groups):
            try:
                self._contexts.append(self._check(index, group))
                self._texts.append([as_text(c) for c in group.completions])
            except ValueError as error:
                if not skip_invalid:
                    raise
                self._contexts.append([])
                self._texts.append([])
                size = len(group.completions)
                self.results[index] = GroupRewards([None] * size, error=str(error))
                continue
            size = len(self._texts[index])
            if size < 2 and not self.strategy.needs_reference:
                self.results[index] = GroupRewards([None] * size)  # nothing to compare with
                continue
            game = self.strategy.play(size, random.Random(group_seed(seed, group)))
            self._games[index] = game
            self._advance(index, None)
        self._judged: list[tuple[int, int]] = []  # (group, pair index) of each example sent

    def _check(self, index: int, group: Group) -> list[Message]:
        where = f"group {group.id!r}" if group.id is not None else f"group {index}"
        if self.strategy.needs_reference and group.reference is None:
            raise ValueError(
                f"strategy {self.strategy.name!r} needs a reference answer, {where} has none"
            )
        try:
            return as_context(group.prompt)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None

    @property
    def done(self) -> bool:
        return not self._games

    def examples(self) -> list[PairwiseExample]:
        """This round's pairs that need the judge, over all groups still playing."""
        examples, self._judged = [], []
        for index, pairs in self._pairs.items():
            for k, (first, second) in enumerate(pairs):
                a, b = self._text(index, first), self._text(index, second)
                if a == b:
                    continue
                self._judged.append((index, k))
                example_id = f"{self.groups[index].id or index}:{first}:{second}"
                examples.append(
                    PairwiseExample(
                        id=example_id, context=self._contexts[index], response_a=a, response_b=b
                    )
                )
        return examples

    def feed(self, results: Sequence[PairResult]) -> None:
        """The judge's results for the last :meth:`examples`, in the same order."""
        if len(results) != len(self._judged):
            raise ValueError(f"expected {len(self._judged)} results, got {len(results)}")
        found = {key: result for key, result in zip(self._judged, results, strict=True)}
        for index, pairs in list(self._pairs.items()):
            outcomes: list[Scores | None] = []
            for k, (first, second) in enumerate(pairs):
                result = found.get((index, k))
                scores = (
                    (0.5, 0.5)
                    if result is None
                    else outcome_scores(result, self.on_unparsed, self.outcome)
                )
                outcomes.append(scores)
                self._comparisons[index].append(Comparison(first, second, scores, result))
            self._advance(index, outcomes)
        self._judged = []

    def _text(self, index: int, position: int) -> str:
        if position == REFERENCE:
            return str(self.groups[index].reference)
        return self._texts[index][position]

    def _advance(self, index: int, outcomes: list[Scores | None] | None) -> None:
        game = self._games[index]
        try:
            pairs = next(game) if outcomes is None else game.send(outcomes)
        except StopIteration as stop:
            self.results[index] = GroupRewards(list(stop.value), self._comparisons[index])
            del self._games[index]
            self._pairs.pop(index, None)
            return
        self._pairs[index] = pairs


def with_both_orders(scorer: Any) -> Any:
    """``scorer`` itself if it judges both orders, else a view of it that does.

    The view is a shallow copy: it shares the backend, the cache and the statistics.
    """
    if scorer.order == "both":
        return scorer
    view = copy.copy(scorer)
    view.order = "both"
    return view


def score_groups(
    scorer: Any,
    groups: Sequence[Group],
    strategy: str | Strategy = "round-robin",
    *,
    both_orders: bool = False,
    on_unparsed: OnUnparsed = "tie",
    seed: int = 0,
    skip_invalid: bool = False,
    outcome: Outcome = "hard",
) -> list[GroupRewards]:
    """Score many groups; each round of every group goes to ``scorer.score`` as one batch.

    Args:
        scorer: a :class:`rmr1_plugins.Scorer`.
        groups: the groups; a strategy that ``needs_reference`` needs ``Group.reference`` set.
        strategy: a registered strategy name or a :class:`Strategy` instance.
        both_orders: judge every pair in both A/B orders (otherwise the scorer's own ``order``).
        on_unparsed: ``"tie"``, ``"loss"`` or ``"exclude"`` for a comparison with no verdict.
        seed: seeds the pivot choice and knockout brackets.
        skip_invalid: give a group that cannot be judged (a missing reference, a prompt not
            ending in a user turn) ``None`` rewards and an ``error`` instead of raising.
        outcome: ``"hard"`` (vote shares) or ``"soft"`` (verdict probabilities where the
            backend reports them; see :func:`outcome_scores`).

    Example:
        >>> from rmr1_plugins import Scorer
        >>> from rmr1_plugins.backends.constant import ConstantBackend
        >>> scorer = Scorer(ConstantBackend(options={"completion": "<answer>[[A]]</answer>"}))
        >>> [result] = score_groups(scorer, [Group("2+2?", ["4", "5", "22"])], "round-robin")
        >>> result.rewards, result.judgments  # a judge that always says A: pure position bias
        ([0.5, 0.5, 0.5], 3)
    """
    scorer = with_both_orders(scorer) if both_orders else scorer
    run = GroupScoring(
        groups,
        strategy,
        on_unparsed=on_unparsed,
        seed=seed,
        skip_invalid=skip_invalid,
        outcome=outcome,
    )
    while not run.done:
        examples = run.examples()
        run.feed(scorer.score(examples) if examples else [])
    return [result for result in run.results if result is not None]


async def ascore_groups(
    scorer: Any,
    groups: Sequence[Group],
    strategy: str | Strategy = "round-robin",
    *,
    both_orders: bool = False,
    on_unparsed: OnUnparsed = "tie",
    seed: int = 0,
    skip_invalid: bool = False,
    outcome: Outcome = "hard",
) -> list[GroupRewards]:
    """Async :func:`score_groups`, awaiting ``scorer.ascore``."""
    scorer = with_both_orders(scorer) if both_orders else scorer
    run = GroupScoring(
        groups,
        strategy,
        on_unparsed=on_unparsed,
        seed=seed,
        skip_invalid=skip_invalid,
        outcome=outcome,
    )
    while not run.done:
        examples = run.examples()
        run.feed(await scorer.ascore(examples) if examples else [])
    return [result for result in run.results if result is not None]
