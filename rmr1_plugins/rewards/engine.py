"""Group scoring: pairwise verdicts → one scalar reward per completion of a prompt group.

A policy trainer samples a *group* of completions per prompt and wants one number for each; an
RM-R1 judge only says which of two answers is better. A strategy
(:mod:`rmr1_plugins.rewards.strategies`) decides which pairs to judge; :class:`GroupScoring`
plays every group's strategy round by round, without I/O, and :func:`score_groups` /
:func:`ascore_groups` drive it with a scorer (a sync/async twin: their signatures repeat each
other on purpose, so change both).

Each comparison costs one judgment per order and sample: ×2 with ``order="both"`` (here or in
the scorer), ×``sampling.num_samples`` when sampling several verdicts. A comparison of two
identical texts is a tie without asking the judge. All comparisons of one round, over every group
passed in, go to the backend as one batch.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rmr1_plugins.offload import off_loop
from rmr1_plugins.rewards.config import OnUnparsed, Outcome
from rmr1_plugins.rewards.inputs import as_context, as_text
from rmr1_plugins.rewards.strategies import (
    REFERENCE,
    Pair,
    Play,
    Scores,
    Strategy,
    resolve_strategy,
)
from rmr1_plugins.schema import Message, PairResult, PairwiseExample
from rmr1_plugins.scorer import AnyScorer, PairScorer

ScorerOrder = Literal["given", "random", "both"]  # as ScorerConfig.order


@dataclass
class Group:
    """The completions of one prompt.

    ``prompt`` is a string (one user turn) or a chat message list; see :func:`as_context`.
    ``completions`` are strings or assistant message lists (see :func:`as_text`).
    """

    prompt: str | Sequence[Mapping[str, Any] | Message]
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


def texts_of(group: Group) -> list[str]:
    """The group's completions as judged, then its reference (index :data:`REFERENCE`, -1)."""
    return [*map(as_text, group.completions), str(group.reference)]


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
    prompt = (
        group.prompt
        if isinstance(group.prompt, str)
        else [m.model_dump() if isinstance(m, Message) else dict(m) for m in group.prompt]
    )
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

    def rewards(self) -> list[GroupRewards]:
        """Every group's rewards, in order, once :attr:`done`."""
        return [result for result in self.results if result is not None]

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
        size = len(self._texts[index])
        try:
            pairs = next(game) if outcomes is None else game.send(outcomes)
            error = _bad_pairs(pairs, size, self.strategy.needs_reference)
        except StopIteration as stop:
            self._finish(index, stop.value)
            return
        except Exception as failure:  # a strategy's bug costs its own group, nothing else
            error = f"{type(failure).__name__}: {failure}"
        if error is not None:
            self._finish(index, None, f"strategy {self.strategy.name!r} failed: {error}")
            return
        self._pairs[index] = list(pairs)

    def _finish(self, index: int, rewards: Any, error: str | None = None) -> None:
        """Record a group's rewards: ``None`` for all with ``error`` if the strategy returned
        something other than one finite reward (in [0, 1] if bounded) or ``None`` per completion;
        identical completions get the mean of their rewards."""
        texts = self._texts[index]
        if error is None:
            problem = _bad_rewards(rewards, len(texts), self.strategy.bounded)
            if problem is not None:
                error = f"strategy {self.strategy.name!r} failed: {problem}"
        values: list[float | None] = (
            [None] * len(texts) if error is not None else _same_text_mean(texts, [*rewards])
        )
        self.results[index] = GroupRewards(values, self._comparisons[index], error=error)
        del self._games[index]
        self._pairs.pop(index, None)


def _bad_pairs(pairs: Any, size: int, reference: bool) -> str | None:
    """Why a strategy's round is not a list of pairs of the group's indices, else ``None``."""
    allowed = range(REFERENCE if reference else 0, size)
    if not isinstance(pairs, (list, tuple)) or not all(
        isinstance(pair, tuple)
        and len(pair) == 2
        and all(isinstance(k, int) and k in allowed for k in pair)
        for pair in pairs
    ):
        return f"it asked for pairs that are not in a group of {size}"
    return None


def _bad_rewards(rewards: Any, size: int, bounded: bool) -> str | None:
    """Why a strategy's rewards are not one finite number (or ``None``) per completion."""
    if not isinstance(rewards, (list, tuple)) or len(rewards) != size:
        return f"it did not return {size} rewards"
    for value in rewards:
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"it returned a reward that is not a number ({value!r})"
        if not math.isfinite(value) or (bounded and not 0 <= value <= 1):
            return f"it returned the reward {value!r}, outside {'[0, 1]' if bounded else 'ℝ'}"
    return None


def _same_text_mean(texts: list[str], rewards: list[float | None]) -> list[float | None]:
    """``rewards`` with every set of identical completions given the mean of its rewards (the
    judge's noise or a bracket's tie rule must not tell two copies of one answer apart)."""
    copies: dict[str, list[int]] = {}
    for position, text in enumerate(texts):
        copies.setdefault(text, []).append(position)
    values = list(rewards)
    for positions in copies.values():
        if len(positions) < 2:
            continue
        known = [rewards[k] for k in positions if rewards[k] is not None]
        if len(set(known)) == 1 and len(known) == len(positions):
            continue  # already equal: keep the values exactly
        mean = sum(known) / len(known) if known else None  # type: ignore[arg-type]
        for k in positions:
            values[k] = mean
    return values


def with_both_orders(scorer: AnyScorer) -> AnyScorer:
    """``scorer`` itself if it judges both orders, else a view of it that does.

    The view is a shallow copy: it shares the backend, the cache and the statistics.
    """
    if scorer.order == "both":
        return scorer
    view = copy.copy(scorer)
    view.order = "both"
    return view


def with_order(scorer: AnyScorer, order: ScorerOrder | None) -> AnyScorer:
    """``scorer``, or a view of it judging in ``order`` (``None``: the scorer's own)."""
    if order is None or order == scorer.order:
        return scorer
    if order == "both":
        return with_both_orders(scorer)
    if order not in ("given", "random"):
        raise ValueError(f"order must be 'given', 'random' or 'both', got {order!r}")
    view = copy.copy(scorer)
    view.order = order
    return view


def _scoring(
    scorer: PairScorer, groups: Sequence[Group], strategy: str | Strategy, **options: Any
) -> tuple[PairScorer, GroupScoring]:
    """The scorer in the asked order and a :class:`GroupScoring` (shared by the two drivers)."""
    scorer = with_order(scorer, options.pop("order"))
    return scorer, GroupScoring(groups, strategy, **options)


def _ordered(scorer: PairScorer, **options: Any) -> tuple[PairScorer, dict[str, Any]]:
    """The scorer in the asked order and the options left (as :func:`_scoring`, same depth)."""
    return with_order(scorer, options.pop("order")), options


def score_groups(
    scorer: PairScorer,
    groups: Sequence[Group],
    strategy: str | Strategy = "round-robin",
    *,
    order: ScorerOrder | None = None,
    on_unparsed: OnUnparsed = "tie",
    seed: int = 0,
    skip_invalid: bool = False,
    outcome: Outcome = "hard",
) -> list[GroupRewards]:
    """Score many groups; each round of every group goes to ``scorer.score`` as one batch.

    Args:
        scorer: a :class:`rmr1_plugins.Scorer` (any :class:`~rmr1_plugins.scorer.PairScorer`).
        groups: the groups; a strategy that ``needs_reference`` needs ``Group.reference`` set.
        strategy: a registered strategy name or a :class:`Strategy` instance.
        order: ``"both"`` judges every pair in both A/B orders, ``"given"`` / ``"random"`` as
            :class:`rmr1_plugins.Scorer` does; ``None`` keeps the scorer's own ``order``.
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
    scorer, run = _scoring(scorer, groups, strategy, **_options(locals()))
    while not run.done:
        examples = run.examples()
        run.feed(scorer.score(examples) if examples else [])
    return [result for result in run.results if result is not None]


async def ascore_groups(
    scorer: PairScorer,
    groups: Sequence[Group],
    strategy: str | Strategy = "round-robin",
    *,
    order: ScorerOrder | None = None,
    on_unparsed: OnUnparsed = "tie",
    seed: int = 0,
    skip_invalid: bool = False,
    outcome: Outcome = "hard",
) -> list[GroupRewards]:
    """Async :func:`score_groups`, awaiting ``scorer.ascore``.

    Building the examples and the strategies' fits grow with the group, so they run in a worker
    thread, never on the event loop.
    """
    scorer, options = _ordered(scorer, **_options(locals()))
    run = await off_loop(GroupScoring, groups, strategy, **options)
    while not run.done:
        examples = await off_loop(run.examples)
        results = await scorer.ascore(examples) if examples else []
        await off_loop(run.feed, results)
    return [result for result in run.results if result is not None]


def _options(arguments: dict[str, Any]) -> dict[str, Any]:
    """A driver's keyword arguments (everything but the scorer, groups and strategy)."""
    return {k: v for k, v in arguments.items() if k not in ("scorer", "groups", "strategy")}
