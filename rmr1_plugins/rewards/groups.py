"""The rule for a group, in one place, and group scoring from a ``reward:`` section.

Every integration that turns a prompt's completions into rewards has the completions it got
(``size``) and the number the trainer sampled (``expected``). :func:`plan_group` says what to do
with them, as a typed :class:`GroupPlan`, without I/O or clocks:

===========================================  ========  =========================  ======
the group                                    ``kind``  judged with                split
===========================================  ========  =========================  ======
a strategy that ``needs_reference``          whole     each vs its reference      no
complete (``size >= expected``), 2 or more   whole     the strategy               no
complete, a group of one (n = 1)             alone     its reference              no
incomplete, ``on_split="partial"``, 2+       partial   the strategy, on those     yes
incomplete, 1, or ``on_split="reference"``   alone     each vs the reference      yes
incomplete, ``on_split="drop"``              fallback  nothing (``dropped``)      yes
incomplete, ``on_split="error"``             raises :class:`SplitGroup`
===========================================  ========  =========================  ======

Judging against the reference without one is the fallback ``no_reference``. ``partial`` is the
cohort service's rule (a group that missed its deadline is judged with the members it has);
``reference``, ``drop`` and ``error`` are ``reward.group.on_split``'s (TRL, veRL).

:func:`scoring`, :func:`score` and :func:`ascore` score groups with the settings of a
:class:`~rmr1_plugins.rewards.config.RewardConfig` (``outcome``, ``on_unparsed``, ``seed``,
the strategy and its options), so callers do not pass them by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rmr1_plugins.errors import RMR1Error
from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.rewards.engine import (
    Group,
    GroupRewards,
    GroupScoring,
    ascore_groups,
    score_groups,
)
from rmr1_plugins.rewards.strategies import ReferenceStrategy, Strategy
from rmr1_plugins.scorer import PairScorer

PlanKind = Literal["whole", "partial", "alone", "fallback"]
SplitRule = Literal["partial", "reference", "drop", "error"]
AGAINST_REFERENCE = ReferenceStrategy()


class SplitGroup(RMR1Error, ValueError):
    """A group arrived incomplete and the rule is ``on_split="error"``."""


@dataclass(frozen=True)
class GroupPlan:
    """What to do with a group: judge it with ``strategy``, or give the ``fallback`` kind.

    ``kind`` is ``whole``, ``partial``, ``alone`` or ``fallback``; ``split`` says the group
    arrived incomplete; ``fallback`` is a metrics fallback kind (``no_reference``,
    ``dropped``) when ``strategy`` is None; ``reason`` says why, for logs and errors.
    """

    kind: PlanKind
    strategy: Strategy | None
    size: int
    expected: int
    split: bool = False
    fallback: str | None = None
    reason: str = ""

    @property
    def reference(self) -> bool:
        """Judged against the reference answer."""
        return self.strategy is not None and self.strategy.needs_reference


def plan_group(
    size: int,
    expected: int,
    strategy: Strategy,
    *,
    has_reference: bool,
    on_split: SplitRule = "partial",
) -> GroupPlan:
    """The plan for ``size`` completions of a group of ``expected`` (see the module table)."""
    if size < 1 or expected < 1:
        raise ValueError(f"a group needs at least one completion, got {size} of {expected}")
    split = size < expected and not strategy.needs_reference
    got = f"the group got {size} of {expected} completions"
    if split and on_split == "error":
        raise SplitGroup(f"{got}; reward.group.on_split is 'error'")
    if split and on_split == "drop":
        return GroupPlan("fallback", None, size, expected, True, "dropped", f"{got} (dropped)")
    if strategy.needs_reference:
        kind: PlanKind = "whole"
    elif split and size >= 2 and on_split == "partial":
        return GroupPlan("partial", strategy, size, expected, True, reason=got)
    elif split or size < 2:
        kind, strategy = "alone", AGAINST_REFERENCE
    else:
        return GroupPlan("whole", strategy, size, expected)
    if not has_reference:
        why = "no reference answer to judge against" + (f" ({got})" if split else "")
        return GroupPlan("fallback", None, size, expected, split, "no_reference", why)
    return GroupPlan(kind, strategy, size, expected, split, reason=got if split else "")


def group_options(config: RewardConfig) -> dict[str, Any]:
    """The group engine's keyword arguments that a ``reward:`` section decides."""
    return {"outcome": config.outcome, "on_unparsed": config.on_unparsed, "seed": config.seed}


def scoring(
    groups: Sequence[Group], config: RewardConfig, strategy: Strategy | None = None
) -> GroupScoring:
    """A :class:`GroupScoring` of ``groups`` with ``config``'s settings (``strategy``: the
    configured one); a group that cannot be judged gets ``None`` rewards and an ``error``."""
    chosen = config.build_strategy() if strategy is None else strategy
    return GroupScoring(groups, chosen, skip_invalid=True, **group_options(config))


def score(
    scorer: PairScorer,
    groups: Sequence[Group],
    config: RewardConfig,
    strategy: Strategy | None = None,
) -> list[GroupRewards]:
    """:func:`~rmr1_plugins.rewards.engine.score_groups` with ``config``'s settings, as
    :func:`scoring`; :func:`ascore` is its async twin."""
    chosen = config.build_strategy() if strategy is None else strategy
    return score_groups(scorer, groups, chosen, skip_invalid=True, **group_options(config))


async def ascore(
    scorer: PairScorer,
    groups: Sequence[Group],
    config: RewardConfig,
    strategy: Strategy | None = None,
) -> list[GroupRewards]:
    """The async twin of :func:`score` (:func:`~rmr1_plugins.rewards.engine.ascore_groups`)."""
    chosen = config.build_strategy() if strategy is None else strategy
    return await ascore_groups(scorer, groups, chosen, skip_invalid=True, **group_options(config))
