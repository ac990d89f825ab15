"""Data model: pairwise examples in, judgments out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Verdict = Literal["A", "B"]
TaskType = Literal["Chat", "Reasoning"]

_LABEL_ALIASES = {"A": "A", "B": "B", "model_a": "A", "model_b": "B"}


def normalize_label(value: object) -> Verdict:
    """Map ``A``/``B``/``model_a``/``model_b`` to ``A``/``B``; anything else is a ``ValueError``."""
    if isinstance(value, str) and value in _LABEL_ALIASES:
        return _LABEL_ALIASES[value]  # type: ignore[return-value]
    raise ValueError(f"label must be 'A', 'B', 'model_a' or 'model_b', got {value!r}")


class Message(BaseModel):
    """One chat turn. Extra keys (tool calls, names) are kept but not rendered."""

    model_config = ConfigDict(extra="allow")

    role: str
    content: str


class PairwiseExample(BaseModel):
    """A shared conversation and two candidate final assistant responses."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    context: list[Message] = Field(min_length=1)
    response_a: str
    response_b: str
    label: Verdict | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_to_str(cls, value: object) -> object:
        return str(value) if isinstance(value, int) else value

    @field_validator("label", mode="before")
    @classmethod
    def _label(cls, value: object) -> object:
        return None if value is None else normalize_label(value)

    @model_validator(mode="after")
    def _ends_with_user(self) -> PairwiseExample:
        if self.context[-1].role != "user":
            raise ValueError(
                "context must end with a user turn, "
                f"the last turn has role {self.context[-1].role!r}"
            )
        return self

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> PairwiseExample:
        """Build from a native row, or a TRL preference row (``prompt``/``chosen``/``rejected``).

        TRL rows put the chosen response in slot A (``label="A"``); use the scorer's ``order``
        option to randomise or judge both positions.
        """
        if "prompt" in row and "chosen" in row and "rejected" in row and "context" not in row:
            return cls(
                id=row.get("id"),
                context=_as_messages(row["prompt"], role="user"),
                response_a=_as_text(row["chosen"]),
                response_b=_as_text(row["rejected"]),
                label="A",
            )
        return cls.model_validate(dict(row))

    def swapped(self) -> PairwiseExample:
        """The same pair with the responses (and the label) in the other slots."""
        label = None if self.label is None else ("B" if self.label == "A" else "A")
        return self.model_copy(
            update={"response_a": self.response_b, "response_b": self.response_a, "label": label}
        )


def _as_messages(value: object, role: str) -> list[Message]:
    if isinstance(value, str):
        return [Message(role=role, content=value)]
    return [Message.model_validate(m) for m in value]  # type: ignore[attr-defined]


def _as_text(value: object) -> str:
    """A TRL completion: a string, or a message list whose assistant turns are joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(m, Mapping) for m in value):
        turns = [m for m in value if m.get("role") == "assistant"]
        if len(turns) == 1:
            return str(turns[0].get("content", ""))
    raise ValueError(
        "chosen/rejected must be a string or a list holding exactly one assistant message"
    )


class ParsedParts(BaseModel):
    """The structured sections of an RM-R1 completion (any may be missing)."""

    task_type: TaskType | None = None
    rubric: str | None = None
    solution: str | None = None
    eval_text: str | None = None


class Judgment(BaseModel):
    """One judge completion, parsed.

    ``verdict`` is always relative to the example as given: if the judge saw the responses
    swapped (``swapped=True``), its raw ``[[A]]`` has already been mapped back to ``B``.
    """

    verdict: Verdict | None
    completion: str
    swapped: bool = False
    finish_reason: str | None = None
    parts: ParsedParts = Field(default_factory=ParsedParts)
    prob_a: float | None = Field(
        None,
        ge=0,
        le=1,
        description="the judge's probability that response A (as given) is better, read at "
        "its verdict token; None when the backend reported none",
    )
    prob_invalid: bool = Field(
        False,
        description="the backend's verdict log-probabilities were impossible (NaN, above 0): "
        "treated as absent, counted in judge health",
    )


class PairResult(BaseModel):
    """The combined verdict for one pair over all orders and samples judged."""

    id: str | None = None
    verdict: Verdict | None
    votes: dict[str, int]
    orders_agree: bool | None = Field(
        None,
        description="both orders judged: whether their majority verdicts agree (False when only "
        "one order has a verdict); None when only one order was judged or neither order has a "
        "verdict",
    )
    label: Verdict | None = None
    judgments: list[Judgment]
    prob_a: float | None = Field(
        None,
        ge=0,
        le=1,
        description="mean of the judgments' prob_a (over both orders: debiased); None if none",
    )

    @property
    def correct(self) -> bool | None:
        """Whether the verdict matches the label (``None`` without a label)."""
        return None if self.label is None else self.verdict == self.label
