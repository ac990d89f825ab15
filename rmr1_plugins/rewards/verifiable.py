"""RM-R1's verifiable reward, for training a judge itself (stage 2 of the RM-R1 recipe).

The policy being trained *is* the judge: it reads a pair and writes a rubric and a verdict, and
the dataset's label (RM-R1's ``winner`` column, ``model_a``/``model_b``, or ``A``/``B``) says
which answer is right. The reward is +1.0 for the right verdict and -1.0 for anything else.

Rules:

- ``rmr1-train`` (default, the official rule): only the last 80 characters count, and the right
  ``<answer>[[X]]</answer>`` must be there without the other one
  (:func:`rmr1_plugins.parsing.train_reward`). RM-R1 decoded completions *with* special tokens,
  so an end-of-sequence marker took part of the 80 characters; trainers that decode without them
  (TRL, veRL) are a few characters more lenient.
- ``strict``: the last well-formed ``<answer>[[X]]</answer>`` after the last ``</think>``,
  anywhere in the text (:class:`rmr1_plugins.parsing.StrictParser`).

A label that is not ``A``, ``B``, ``model_a`` or ``model_b`` is a dataset bug: the function
raises ``ValueError``; :class:`VerifiableReward` (for use inside a training run) gives it the
``fallback`` reward instead and logs a warning, so one bad row never stops a run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

from rmr1_plugins.parsing import StrictParser, train_reward
from rmr1_plugins.schema import normalize_label

Rule = Literal["rmr1-train", "strict"]
RULES: tuple[Rule, ...] = ("rmr1-train", "strict")
logger = logging.getLogger(__name__)


def verifiable_reward(completion: str, label: object, rule: Rule = "rmr1-train") -> float:
    """+1.0 if the judge's ``completion`` picks ``label``, else -1.0; a bad label raises.

    Example:
        >>> verifiable_reward("<rubric>...</rubric><answer>[[B]]</answer>", "model_b")
        1.0
        >>> verifiable_reward("<answer>[[B]]</answer> on reflection, A.", "B", rule="strict")
        1.0
    """
    if rule == "rmr1-train":
        return train_reward(completion, label)
    if rule == "strict":
        return 1.0 if StrictParser().parse(completion) == normalize_label(label) else -1.0
    raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")


class VerifiableReward:
    """Batch form for training loops: a bad label gets ``fallback`` (logged), never an exception.

    Args:
        rule: ``rmr1-train`` or ``strict``.
        fallback: the reward of a row whose label is unusable (``None`` lets TRL drop the row).
    """

    def __init__(self, rule: Rule = "rmr1-train", fallback: float | None = 0.0) -> None:
        if rule not in RULES:
            raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
        self.rule = rule
        self.fallback = fallback

    def __call__(self, completions: Sequence[str], labels: Sequence[object]) -> list[float | None]:
        if len(completions) != len(labels):
            raise ValueError(f"{len(completions)} completions but {len(labels)} labels")
        rewards: list[float | None] = []
        bad = 0
        for completion, label in zip(completions, labels, strict=True):
            try:
                rewards.append(verifiable_reward(completion, label, self.rule))
            except ValueError:
                bad += 1
                rewards.append(self.fallback)
        if bad:
            logger.warning(
                "rmr1: %d of %d rows have a label other than A/B/model_a/model_b; "
                "they get the fallback reward %s",
                bad,
                len(labels),
                self.fallback,
            )
        return rewards
