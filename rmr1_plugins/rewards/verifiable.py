"""RM-R1's verifiable reward, for training a judge itself (stage 2 of the RM-R1 recipe).

The policy being trained *is* the judge: it reads a pair and writes a rubric and a verdict, and
the dataset's label (RM-R1's ``winner`` column, ``model_a``/``model_b``, or ``A``/``B``) says
which answer is right. The reward is +1.0 for the right verdict and -1.0 for anything else.

Rules:

- ``rmr1-train`` (default, the official parser): only the last 80 characters count, and the right
  ``<answer>[[X]]</answer>`` must be there without the other one
  (:func:`rmr1_plugins.parsing.train_reward`). RM-R1 decoded completions *with* special tokens,
  so an end-of-sequence marker took part of the 80 characters; trainers that decode without them
  (TRL, veRL) are a few characters more lenient.
- ``strict``: the last well-formed ``<answer>[[X]]</answer>`` after the last ``</think>``,
  anywhere in the text (:class:`rmr1_plugins.parsing.StrictParser`).

A label that is not ``A``, ``B``, ``model_a`` or ``model_b`` is a dataset bug:
:func:`verifiable_reward` raises ``ValueError``; :func:`grade` (for use inside a training run)
says so instead, and one rule gives such a row its reward: ``None`` in TRL (TRL leaves the row
out of the reward mean), :data:`NEUTRAL` (0.0) with ``rmr1_bad_input`` 1.0 in veRL and OpenRLHF,
which cannot take ``None``; a warning is logged. One bad row never stops a run.

The trainers' shapes, one each, all on :func:`grade` and one key set, part of the metrics
contract (:data:`KEYS`, :data:`rmr1_plugins.rewards.metrics.VERIFIABLE_METRICS`):
``rmr1_correct``, 1.0 for a correct verdict; ``rmr1_bad_input``, 1.0 for an unusable label:

- TRL: :class:`TRLVerifiableReward` (``rmr1_trl.TRLVerifiableReward``, the recipe's
  ``rmr1_verifiable_reward``): the completion's text by :func:`~.inputs.as_text`.
- veRL: :func:`verl_verifiable_reward` (``rmr1_verl.reward.verl_verifiable_reward``, the
  recipe's ``compute_score``): ``solution_str`` as veRL decoded it.
- OpenRLHF: :func:`openrlhf_verifiable_reward` (the recipe's ``reward_func``): what follows the
  prompt in the query, end-of-sequence tokens *kept*, as RM-R1 read it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rmr1_plugins.parsing import StrictParser, train_reward
from rmr1_plugins.rewards.inputs import TRL_KWARGS, as_text
from rmr1_plugins.rewards.metrics import VERIFIABLE_METRICS
from rmr1_plugins.schema import normalize_label

ParserName = Literal["rmr1-train", "strict"]
PARSERS: tuple[ParserName, ...] = ("rmr1-train", "strict")
NEUTRAL = 0.0  # the reward of a bad label where the trainer cannot take None
KEYS = tuple(m.name for m in VERIFIABLE_METRICS)
logger = logging.getLogger(__name__)


def verifiable_reward(completion: str, label: object, parser: ParserName = "rmr1-train") -> float:
    """+1.0 if the judge's ``completion`` picks ``label``, else -1.0; a bad label raises.

    Example:
        >>> verifiable_reward("<rubric>...</rubric><answer>[[B]]</answer>", "model_b")
        1.0
        >>> verifiable_reward("<answer>[[B]]</answer> on reflection, A.", "B", parser="strict")
        1.0
    """
    if parser == "rmr1-train":
        return train_reward(completion, label)
    if parser == "strict":
        return 1.0 if StrictParser().parse(completion) == normalize_label(label) else -1.0
    raise ValueError(f"parser must be one of {', '.join(PARSERS)}, got {parser!r}")


def check_parser(parser: str) -> ParserName:
    if parser not in PARSERS:
        raise ValueError(f"parser must be one of {', '.join(PARSERS)}, got {parser!r}")
    return parser


@dataclass(frozen=True)
class Grade:
    """One completion graded: ``score`` is +1.0 / -1.0, or ``None`` for a bad label."""

    score: float | None

    @property
    def correct(self) -> bool:
        return self.score == 1.0

    @property
    def bad_input(self) -> bool:
        return self.score is None

    @property
    def reward(self) -> float:
        """The score where the trainer cannot take ``None`` (veRL, OpenRLHF)."""
        return NEUTRAL if self.score is None else self.score

    def logs(self) -> dict[str, float]:
        """The :data:`KEYS`, as floats."""
        return {"rmr1_correct": float(self.correct), "rmr1_bad_input": float(self.bad_input)}


def grade(completion: str, label: object, parser: ParserName = "rmr1-train") -> Grade:
    """The verdict of ``completion`` against ``label``; never raises for a bad label."""
    check_parser(parser)
    try:
        return Grade(verifiable_reward(completion, label, parser))
    except ValueError:
        return Grade(None)


def grade_all(
    completions: Sequence[str], labels: Sequence[object], parser: ParserName = "rmr1-train"
) -> list[Grade]:
    """:func:`grade` for each row, with one warning for the rows whose label is unusable."""
    if len(completions) != len(labels):
        raise ValueError(f"{len(completions)} completions but {len(labels)} labels")
    grades = [grade(c, label, parser) for c, label in zip(completions, labels, strict=True)]
    bad = [label for label, g in zip(labels, grades, strict=True) if g.bad_input]
    if bad:
        logger.warning(
            "rmr1: %d of %d rows have a label other than A/B/model_a/model_b (first: %r); "
            "they get the neutral reward (TRL: None)",
            len(bad),
            len(grades),
            bad[0],
        )
    return grades


class VerifiableReward:
    """The batch form: one score per row, ``None`` for a bad label (logged), never raising.

    Args:
        parser: ``rmr1-train`` or ``strict``.
    """

    def __init__(self, parser: ParserName = "rmr1-train") -> None:
        self.parser = check_parser(parser)

    def __call__(self, completions: Sequence[str], labels: Sequence[object]) -> list[float | None]:
        return [g.score for g in grade_all(completions, labels, self.parser)]


class TRLVerifiableReward:
    """TRL reward function: RM-R1's verifiable reward against the dataset column ``label_key``.

    Completions are strings or assistant message lists (:func:`~.inputs.as_text`); a row with an
    unusable label gets ``None``; a batch without the column is a ``ValueError``. Picklable, so it
    works where TRL runs reward functions in another process.

    Example:
        >>> reward = TRLVerifiableReward()
        >>> reward(prompts=["p", "p"], winner=["model_a", "model_a"],
        ...        completions=["<answer>[[A]]</answer>", "<answer>[[B]]</answer>"])
        [1.0, -1.0]
    """

    def __init__(
        self,
        parser: ParserName = "rmr1-train",
        label_key: str = "winner",
        name: str = "rmr1_verifiable_reward",
    ) -> None:
        self.__name__ = name
        self.label_key = label_key
        self.parser = check_parser(parser)

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float | None]:
        if self.label_key not in kwargs:
            columns = sorted(k for k in kwargs if k not in TRL_KWARGS)
            raise ValueError(
                f"{self.__name__} needs the dataset column {self.label_key!r} "
                f"(model_a/model_b or A/B); the batch has columns {columns}"
            )
        texts = [as_text(c) for c in completions]
        return [g.score for g in grade_all(texts, kwargs[self.label_key], self.parser)]


def verl_verifiable_reward(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: Any = None,
    *,
    parser: ParserName = "rmr1-train",
    **_: Any,
) -> dict[str, float]:
    """veRL ``compute_score``: ``ground_truth`` is the label; the same keys every call."""
    [graded] = grade_all([solution_str], [ground_truth], parser)
    return {"score": graded.reward, **graded.logs()}


def openrlhf_verifiable_reward(
    queries: Sequence[str],
    prompts: Sequence[str],
    labels: Sequence[Any],
    *,
    parser: ParserName = "rmr1-train",
    **_: Any,
) -> dict[str, Any]:
    """OpenRLHF ``reward_func``: ``queries`` are prompt + response decoded with special tokens.

    The response is what follows the prompt, its end-of-sequence tokens kept (RM-R1's 80
    characters include them); only the tail counts, so when decoding changed the prompt the
    whole query is as good.
    """
    responses = [
        query[len(prompt) :] if query.startswith(prompt) else query
        for query, prompt in zip(queries, prompts, strict=True)
    ]
    grades = grade_all(responses, labels, parser)
    rewards = [g.reward for g in grades]
    return {
        "rewards": rewards,
        "scores": [(r + 1.0) / 2.0 for r in rewards],  # 0..1, for OpenRLHF's dynamic filtering
        "extra_logs": {key: [g.logs()[key] for g in grades] for key in KEYS},
    }
