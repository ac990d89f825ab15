"""The ``reward:`` section of the judge's YAML file: one model and one loader for every trainer.

One YAML file holds the scorer configuration that ``rmr1 score --config`` reads and a ``reward:``
section for how verdicts become rewards. Every integration reads the same section through
:func:`load_reward_settings`: the group strategies of the TRL and veRL extensions, the per-sample
reference reward of ``rmr1 serve`` and the OpenRLHF reward file. Each reads the keys that apply
to it and accepts the others, so one file can serve them all::

    # rmr1.yaml
    template: rmr1-instruct
    order: both                 # judge every pair in both A/B orders (cancels position bias)
    backend: {name: vllm, model: gaotang/RM-R1-Qwen2.5-Instruct-7B}
    sampling: {max_new_tokens: 4096}
    reward:
      strategy: round-robin     # TRL, veRL: how a prompt's completions are compared
      win: 1.0                  # everywhere: rewards run from loss to win
      loss: 0.0
      timeout_s: 150            # rmr1 serve, OpenRLHF: per-sample deadline

The file comes from the ``path`` argument or ``$RMR1_CONFIG``. ``RMR1_*`` variables change the
scorer part as usual and ``RMR1_REWARD__<KEY>`` the reward part (``RMR1_REWARD__STRATEGY=pivot``);
explicit arguments win over both. docs/rewards.md has the table of keys. Nothing here imports a
trainer.
"""

from __future__ import annotations

import math
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rmr1_plugins.config import (
    ENV_PREFIX,
    ConfigError,
    ScorerConfig,
    deep_merge,
    env_sources,
    env_values,
    error_lines,
    merge_layers,
    read_config_file,
    registered,
)
from rmr1_plugins.rewards.engine import OnUnparsed, Outcome
from rmr1_plugins.rewards.strategies import Strategy

CONFIG_ENV = "RMR1_CONFIG"
REWARD_ENV_PREFIX = f"{ENV_PREFIX}REWARD__"
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


class RewardConfig(BaseModel):
    """How judgments become rewards: the ``reward:`` section, for every trainer integration.

    The scale (``win``, ``loss``, ``fallback``) means the same everywhere. The group keys are
    read by the TRL and veRL extensions (:mod:`~.engine`), the per-sample keys by the
    reference reward of ``rmr1 serve`` and the OpenRLHF reward file
    (:mod:`rmr1_plugins.rewards.samples`, :mod:`rmr1_plugins.rewards.service`); an integration
    ignores the keys of the others. Variables are ``RMR1_REWARD__<KEY>``.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    # The reward scale, everywhere.
    win: float = Field(1.0, description="reward for winning every comparison")
    loss: float = Field(0.0, description="reward for losing every comparison")
    fallback: float | None = Field(
        None,
        description="reward of a sample with no verdict where the trainer cannot take None "
        "(default: the midpoint of loss and win)",
    )
    # Comparing a group of completions (TRL, veRL).
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
    reference_key: str = Field(
        "reference", description="dataset column (TRL) / extra_info key (veRL) of a reference"
    )
    group_size: int | None = Field(
        None, ge=1, description="completions per prompt (TRL num_generations, veRL rollout.n)"
    )
    group_timeout: float = Field(
        60.0,
        gt=0,
        description="seconds a group waits for its last member before it is judged with what "
        "arrived (rmr1 serve cohorts; capped at half of timeout_s)",
    )
    on_split: Literal["error", "reference", "drop"] = Field(
        "error", description="what to do with a group that arrives incomplete"
    )
    stream_pairs: bool = Field(
        True,
        description="judge a cohort's pairs as soon as both rollouts have arrived, not when the "
        "group is complete (rmr1 serve cohorts, veRL manager; pivot: the first arrival)",
    )
    # One response against its reference (rmr1 serve, OpenRLHF).
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
    # Hard pairs for the next judge (every integration; rmr1_plugins.rewards.hard_pairs).
    hard_pairs_path: str | None = Field(
        None, description="append order-inconsistent and low-confidence pairs to this JSONL"
    )
    hard_pairs_max_records: int = Field(
        100_000, gt=0, description="stop appending once the file holds this many pairs"
    )
    hard_pairs_confidence: float = Field(
        0.6, ge=0.5, le=1.0, description="low confidence: max(prob_a, 1 - prob_a) below this"
    )
    # The batching reward service (rmr1 serve, OpenRLHF).
    max_batch_size: int = Field(64, gt=0, description="samples per judge call")
    max_wait_ms: float = Field(10.0, ge=0, description="how long a batch waits to fill up")
    max_concurrent_batches: int = Field(1, gt=0, description="judge calls in flight at once")
    timeout_s: float = Field(150.0, gt=0, description="per-sample deadline, queueing included")
    retries: int = Field(1, ge=0, description="retries of a single failing sample")
    retry_backoff_s: float = Field(0.5, ge=0, description="first retry delay; doubles each time")
    max_pending_bytes: int = Field(
        256 * 1024 * 1024,
        gt=0,
        description="text held for cohorts at most (prompts, responses, references; rmr1 serve "
        "answers 503 beyond it)",
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
# ``/cohort``, field ``settings``) so a client and a server cannot silently disagree.
DECISIVE_REWARD_KEYS: tuple[str, ...] = (
    "strategy",
    "strategy_options",
    "win",
    "loss",
    "fallback",
    "outcome",
    "on_unparsed",
    "seed",
    "stream_pairs",
)


class RewardSettings(BaseModel):
    """The judge (``scorer``) and how its verdicts become rewards (``reward``)."""

    model_config = ConfigDict(extra="forbid")

    scorer: ScorerConfig = Field(default_factory=ScorerConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)


def decisive_settings(settings: RewardSettings) -> dict[str, Any]:
    """The settings that decide a group's rewards, as plain JSON values.

    The ``reward:`` keys in :data:`DECISIVE_REWARD_KEYS` (``fallback`` resolved to its value) and
    the scorer's A/B ``order``. A cohort client sends them with every member; the cohort service
    compares them with its own.
    """
    return decisive_values(settings.reward, settings.scorer.order)


def decisive_values(reward: RewardConfig, order: str) -> dict[str, Any]:
    """:func:`decisive_settings` from a ``reward:`` section and the scorer's ``order``."""
    values = reward.model_dump(mode="json", include=set(DECISIVE_REWARD_KEYS))
    values["fallback"] = reward.fallback_reward
    values["order"] = order
    return values


def settings_difference(given: Any, own: Mapping[str, Any]) -> str | None:
    """Why a request's ``settings`` differ from ``own`` (:func:`decisive_settings`), naming the
    first differing key with both values; ``None`` when they agree. Every key must be there."""
    if not isinstance(given, Mapping):
        return f"settings must be an object, got {type(given).__name__}"
    unknown = [key for key in given if key not in own]
    if unknown:
        known = ", ".join(own)
        return f"settings has an unknown key {str(unknown[0])[:80]!r} (known: {known})"
    for key, value in own.items():
        name = "order" if key == "order" else f"reward.{key}"
        if key not in given:
            return f"settings differ from this server's: {name} is missing in the request"
        if not _same(given[key], value):
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


def load_reward_settings(
    path: str | Path | Mapping[str, Any] | None = None,
    *,
    reward: Mapping[str, Any] | None = None,
    training: bool = True,
    **scorer_overrides: Any,
) -> RewardSettings:
    """The scorer and reward settings from one YAML file, ``RMR1_*`` variables and overrides.

    The one loader of every entry point: the trainers' integrations, ``rmr1 serve``, and (through
    :func:`rmr1_plugins.load_config`, with ``training=False``) ``rmr1 score``, ``rmr1 eval`` and
    the recipe's teachers. The same file builds the same scorer everywhere, except for
    ``training``.

    Args:
        path: the YAML file (or a mapping already read from one): the scorer keys plus an
            optional ``reward:`` section. ``None`` reads ``$RMR1_CONFIG`` if set, else defaults.
        reward: overrides for the ``reward:`` section; they win over ``RMR1_REWARD__<KEY>``
            variables, which win over the file.
        training: scoring a policy's answers during training (the trainers, ``rmr1 serve``): the
            scorer's ``neutralize_markup`` guard defaults to on (unless the file, a variable or
            an override sets it), so that a policy cannot forge the judge's verdict markup.
            ``False`` (offline judging) keeps the model's default, off.
        scorer_overrides: overrides for the scorer part (nested dicts, ``backend={"model": x}``);
            they win over ``RMR1_*`` variables, which win over the file.

    Raises:
        ConfigError: naming every invalid key (``backend.nmae``, ``reward.timeout_s``) or name
            (``parser: unknown parser 'strikt' ...``) and the file.
    """
    if isinstance(path, Mapping):
        raw, path = dict(path), None
    else:
        path = path or os.environ.get(CONFIG_ENV) or None
        raw = read_config_file(path) if path is not None else {}
    section = raw.pop("reward", None)
    if section is None:
        section = {}
    elif not isinstance(section, dict):
        where = f"config file {path}" if path else "configuration"
        raise ConfigError(f"{where}: 'reward' must be a mapping, got {type(section).__name__}")
    scorer_values, notes = merge_layers(raw, env_values(), scorer_overrides)
    for note in notes:  # a --backend flag over a file written for another backend
        print(f"note: {note}", file=sys.stderr)
    reward_values = deep_merge(
        deep_merge(section, env_values(prefix=REWARD_ENV_PREFIX, fields=None)), dict(reward or {})
    )
    problems: list[str] = []
    try:
        scorer = ScorerConfig.model_validate(scorer_values)
    except ValidationError as error:
        problems += error_lines(error, sources=env_sources(scorer_overrides))
    try:
        options = RewardConfig.model_validate(reward_values)
    except ValidationError as error:
        sources = env_sources(reward or {}, prefix=REWARD_ENV_PREFIX, fields=None)
        problems += error_lines(error, prefix="reward.", sources=sources)
    if problems:
        source = [f"  (in {path})"] if path else []
        raise ConfigError("\n".join(["invalid configuration:", *problems, *source]))
    if training and "neutralize_markup" not in scorer.model_fields_set:
        scorer = scorer.model_copy(update={"neutralize_markup": True})
    return RewardSettings(scorer=scorer, reward=options)


class LazyScorer:
    """Builds the scorer (and so loads the judge) on first use, once, from any thread.

    Pickling keeps the configuration and drops a built scorer, so a reward object can be sent to
    a worker process cheaply; a scorer passed in directly is pickled as is.
    """

    def __init__(self, config: ScorerConfig | None = None, scorer: Any = None) -> None:
        if config is None and scorer is None:
            raise ValueError("LazyScorer needs a config or a scorer")
        self.config = config
        self._given = scorer is not None
        self._scorer = scorer
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            if self._scorer is None:
                assert self.config is not None
                self._scorer = self.config.build_scorer()
            return self._scorer

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        if not self._given:
            state["_scorer"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
