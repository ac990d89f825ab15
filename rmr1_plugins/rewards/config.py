"""The ``reward:`` section of the judge's YAML file: how verdicts become rewards, for every trainer.

Every integration reads the same section (through :mod:`rmr1_plugins.settings`, the one loader):
the group strategies of the TRL and veRL extensions, the per-sample reference reward of
``rmr1 serve`` and the OpenRLHF reward file. Each reads the keys that apply to it and accepts the
others, so one file can serve them all. Variables are ``RMR1_REWARD__<KEY>``;
docs/concepts/rewards.md has the table of keys. Nothing here imports a trainer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rmr1_plugins.plugins import registered
from rmr1_plugins.rewards.strategies import Strategy

OnUnparsed = Literal["tie", "loss", "exclude"]  # a comparison without a parseable verdict
Outcome = Literal["hard", "soft"]  # vote shares, or the judge's verdict probabilities
DEFAULT_END_TOKENS = (
    "<|im_end|>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<|eot_id|>",
    "</s>",
    "<end_of_turn>",
    "<|end|>",
    "<｜end▁of▁sentence｜>",
)


class GroupConfig(BaseModel):
    """``reward.group``: comparing a group of completions of one prompt (TRL, veRL, cohorts)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    size: int | None = Field(
        None, ge=1, description="completions per prompt (TRL num_generations, veRL rollout.n)"
    )
    timeout_s: float = Field(
        600.0,
        gt=0,
        description="seconds a group waits for its last member before it is judged with what "
        "arrived (rmr1 serve cohorts: capped at half of service.timeout_s)",
    )
    on_split: Literal["error", "reference", "drop"] = Field(
        "error", description="what to do with a group that arrives incomplete"
    )
    stream_pairs: bool | None = Field(
        None,
        description="judge a cohort's pairs as soon as both rollouts have arrived, not when the "
        "group is complete (rmr1 serve cohorts, veRL manager). None: for the strategies whose "
        "rewards it leaves unchanged (not pivot, knockout, adaptive); true: for every strategy, "
        "positions drawn at random taken from arrival order (pivot: the first arrival); false: "
        "never",
    )


class InputsConfig(BaseModel):
    """``reward.inputs``: what the judge is shown of a sample (every integration)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    reference_key: str = Field(
        "reference", description="dataset column (TRL) / extra_info key (veRL) of a reference"
    )
    end_tokens: list[str] = Field(
        default_factory=lambda: list(DEFAULT_END_TOKENS),
        description="special tokens stripped from the end of the response",
    )
    question: Literal["auto", "prompt"] = Field(
        "auto",
        description="auto: the label's question, else the chat turns in the prompt; "
        "prompt: always the formatted prompt as written",
    )
    max_response_chars: int | None = Field(
        None, gt=0, description="cut longer responses (counted in rmr1_clipped)"
    )


class ServiceConfig(BaseModel):
    """``reward.service``: the batching reward service (rmr1 serve, OpenRLHF, veRL cohorts)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    max_batch_size: int = Field(64, gt=0, description="samples per judge call")
    max_wait_ms: float = Field(10.0, ge=0, description="how long a batch waits to fill up")
    max_concurrent_batches: int = Field(1, gt=0, description="judge calls in flight at once")
    timeout_s: float = Field(150.0, gt=0, description="per-sample deadline, queueing included")
    max_retries: int = Field(1, ge=0, description="retries of a single failing sample")
    retry_backoff_s: float = Field(0.5, ge=0, description="first retry delay; doubles each time")
    max_pending_bytes: int = Field(
        256 * 1024 * 1024,
        gt=0,
        description="text held for cohorts at most (prompts, responses, references; rmr1 serve "
        "answers 503 beyond it)",
    )


class HardPairsConfig(BaseModel):
    """``reward.hard_pairs``: hard pairs for the next judge (:mod:`~.hard_pairs`)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    path: str | None = Field(
        None, description="append order-inconsistent and low-confidence pairs to this JSONL"
    )
    max_records: int = Field(
        100_000, gt=0, description="stop appending once the file holds this many pairs"
    )
    confidence: float = Field(
        0.6, ge=0.5, le=1.0, description="low confidence: max(prob_a, 1 - prob_a) below this"
    )


class RewardConfig(BaseModel):
    """How judgments become rewards: the ``reward:`` section, for every trainer integration.

    The top-level keys are the judging rule, the same everywhere: the scale (``win``, ``loss``,
    ``fallback``) and how a group's verdicts make rewards (``strategy`` ... ``seed``). The
    sections hold one concern each: ``group`` (TRL and veRL groups, ``rmr1 serve`` cohorts),
    ``inputs`` (what the judge is shown), ``service`` (the batching service of ``rmr1 serve``
    and OpenRLHF) and ``hard_pairs``; an integration ignores what does not apply to it.
    Variables are ``RMR1_REWARD__<KEY>`` and ``RMR1_REWARD__<SECTION>__<KEY>``.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    win: float = Field(1.0, description="reward for winning every comparison")
    loss: float = Field(0.0, description="reward for losing every comparison")
    fallback: float | None = Field(
        None,
        description="reward of a sample with no verdict where the trainer cannot take None "
        "(default: the midpoint of loss and win)",
    )
    strategy: str = Field("round-robin", description="a registered grouping strategy")
    strategy_options: dict[str, Any] = Field(
        default_factory=dict,
        description="the strategy's arguments, e.g. {budget: 16} for adaptive",
    )
    outcome: Outcome = Field(
        "hard", description="hard: vote shares; soft: the judge's verdict probabilities"
    )
    on_unparsed: OnUnparsed = Field(
        "tie", description="a comparison without a parseable verdict: tie, loss or exclude"
    )
    seed: int = Field(0, description="seeds pivot choices and knockout brackets")
    group: GroupConfig = Field(default_factory=GroupConfig, description="a group of completions")
    inputs: InputsConfig = Field(default_factory=InputsConfig, description="what is judged")
    service: ServiceConfig = Field(
        default_factory=ServiceConfig, description="the batching reward service"
    )
    hard_pairs: HardPairsConfig = Field(
        default_factory=HardPairsConfig, description="hard pairs for the next judge"
    )

    @model_validator(mode="after")
    def _distinct(self) -> RewardConfig:
        if self.win == self.loss:
            raise ValueError("win and loss must differ")
        if not math.isfinite(self.win - self.loss) or not math.isfinite(self.win + self.loss):
            # the midpoint fallback and the scaling would be infinite or NaN
            raise ValueError(
                f"win ({self.win:g}) and loss ({self.loss:g}) are too large: their sum or "
                "difference overflows; keep both within ±8.9e307"
            )
        return self

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, name: str) -> str:
        return registered("strategies", name)  # a typo fails at load time, not at step one

    @model_validator(mode="after")
    def _strategy_options(self) -> RewardConfig:
        self.build_strategy()  # so does a wrong option
        return self

    def build_strategy(self) -> Strategy:
        """The configured strategy, built with ``strategy_options``."""
        from rmr1_plugins.rewards.strategies import resolve_strategy

        try:
            return resolve_strategy(self.strategy, self.strategy_options)
        except (KeyError, LookupError) as error:
            raise ValueError(str(error).strip("'\"")) from None

    @property
    def fallback_reward(self) -> float:
        """``fallback``, or the midpoint of ``loss`` and ``win`` when it is not set."""
        return (self.win + self.loss) / 2 if self.fallback is None else self.fallback

    def scale(self, value: float | None, strategy: Strategy) -> float | None:
        """A strategy's reward on ``[loss, win]``; unbounded ones (bradley-terry) unchanged."""
        if value is None or not strategy.bounded:
            return value
        return self.loss + (self.win - self.loss) * value

    def to_score(self, reward: float) -> float:
        """A reward mapped onto ``[0, 1]`` (OpenRLHF's ``scores``, for dynamic filtering)."""
        return min(1.0, max(0.0, (reward - self.loss) / (self.win - self.loss)))


# The settings that decide a reward in a group: a cohort request carries them (rmr1 serve's
# ``/cohort``, field ``settings``, shaped as the ``reward:`` section) so a client and a server
# cannot silently disagree. A dotted key is a section's key.
DECISIVE_REWARD_KEYS: tuple[str, ...] = (
    "strategy",
    "strategy_options",
    "win",
    "loss",
    "fallback",
    "outcome",
    "on_unparsed",
    "seed",
    "group.stream_pairs",
)


def decisive_values(reward: RewardConfig, order: str) -> dict[str, Any]:
    """The settings that decide a group's rewards (:data:`DECISIVE_REWARD_KEYS`, nested as in
    the YAML, ``fallback`` resolved to its value) and the scorer's A/B ``order``, as plain JSON
    values; see :func:`rmr1_plugins.settings.decisive_settings`."""
    dumped = reward.model_dump(mode="json")
    values: dict[str, Any] = {}
    for key in DECISIVE_REWARD_KEYS:
        *sections, name = key.split(".")
        source, target = dumped, values
        for section in sections:
            source, target = source[section], target.setdefault(section, {})
        target[name] = source[name]
    values["fallback"] = reward.fallback_reward
    values["order"] = order
    return values


_SECTIONS = {key.split(".")[0] for key in DECISIVE_REWARD_KEYS if "." in key}


def settings_difference(given: Any, own: Mapping[str, Any], where: str = "") -> str | None:
    """Why a request's ``settings`` differ from ``own`` (:func:`decisive_values`), naming the
    first differing key with both values; ``None`` when they agree. Every key must be there."""
    label = f"settings.{where[:-1]}" if where else "settings"
    if not isinstance(given, Mapping):
        return f"{label} must be an object, got {type(given).__name__}"
    unknown = [key for key in given if key not in own]
    if unknown:
        known = ", ".join(own)
        return f"{label} has an unknown key {str(unknown[0])[:80]!r} (known: {known})"
    for key, value in own.items():
        name = "order" if key == "order" and not where else f"reward.{where}{key}"
        if key not in given:
            return f"settings differ from this server's: {name} is missing in the request"
        if not where and key in _SECTIONS:
            problem = settings_difference(given[key], value, f"{key}.")
            if problem is not None:
                return problem
        elif not _same(given[key], value):
            return (
                f"settings differ from this server's: {name} is {_shown(given[key])} in the "
                f"request, {_shown(value)} here"
            )
    return None


def _same(a: Any, b: Any) -> bool:
    """JSON values equal, numbers by value (1 == 1.0) but never a boolean for a number."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
