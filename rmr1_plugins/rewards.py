"""Settings shared by the group-aware trainer extensions (TRL, veRL): judge plus reward.

One YAML file holds the scorer configuration that ``rmr1 score --config`` reads and a ``reward:``
section for how verdicts become rewards::

    # rmr1.yaml
    template: rmr1-instruct
    order: both                 # judge every pair in both A/B orders (cancels position bias)
    backend: {name: vllm, model: gaotang/RM-R1-Qwen2.5-Instruct-7B}
    sampling: {max_new_tokens: 4096}
    reward:
      strategy: round-robin     # reference, pivot, circular, round-robin, bradley-terry, knockout
      on_unparsed: tie          # tie, loss or exclude
      reference_key: reference  # the dataset column (TRL) / extra_info key (veRL) of a reference

Extensions find the file through ``RMR1_CONFIG``. ``RMR1_*`` variables change the scorer part as
usual and ``RMR1_REWARD__<KEY>`` the reward part (``RMR1_REWARD__STRATEGY=knockout``); explicit
arguments win over both. The keys that only the per-sample reward service reads (``rmr1 serve``,
the OpenRLHF reward file: batching limits, timeouts, ``end_tokens``, ``question``) may sit in the
same section; they are accepted and unused here. ``win``, ``loss`` and ``fallback`` mean the same
everywhere. Nothing here imports a trainer.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rmr1_plugins.config import ConfigError, ScorerConfig, _deep_merge, _describe, _env_values
from rmr1_plugins.grouping import OnUnparsed, Strategy

CONFIG_ENV = "RMR1_CONFIG"
REWARD_ENV_PREFIX = "RMR1_REWARD__"
# reward: keys of the per-sample reward service (rmr1 serve, OpenRLHF); accepted, unused here.
SERVICE_KEYS = (
    "end_tokens",
    "question",
    "max_response_chars",
    "max_batch_size",
    "max_wait_ms",
    "max_concurrent_batches",
    "timeout_s",
    "retries",
    "retry_backoff_s",
)


class RewardOptions(BaseModel):
    """How pairwise verdicts become one reward per completion (the ``reward:`` section)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    strategy: str = Field("round-robin", description="a registered grouping strategy")
    on_unparsed: OnUnparsed = Field("tie", description="tie, loss or exclude")
    seed: int = Field(0, description="seeds pivot choices and knockout brackets")
    reference_key: str = Field("reference", description="dataset column of a reference answer")
    group_size: int | None = Field(
        None, ge=1, description="completions per prompt (TRL num_generations, veRL rollout.n)"
    )
    on_split: Literal["error", "reference", "drop"] = Field(
        "error", description="what to do with a group that arrives incomplete"
    )
    win: float = Field(1.0, description="reward for winning every comparison")
    loss: float = Field(0.0, description="reward for losing every comparison")
    fallback: float | None = Field(
        None,
        description="reward of an unscorable row where the trainer cannot take None "
        "(default: the midpoint of loss and win)",
    )

    @model_validator(mode="after")
    def _distinct(self) -> RewardOptions:
        if self.win == self.loss:
            raise ValueError("win and loss must differ")
        return self

    @property
    def fallback_reward(self) -> float:
        return (self.win + self.loss) / 2 if self.fallback is None else self.fallback

    def scale(self, value: float | None, strategy: Strategy) -> float | None:
        """A strategy's reward on ``[loss, win]``; unbounded ones (bradley-terry) unchanged."""
        if value is None or not strategy.bounded:
            return value
        return self.loss + (self.win - self.loss) * value


class RewardSettings(BaseModel):
    """The judge (``scorer``) and the reward strategy (``reward``)."""

    model_config = ConfigDict(extra="forbid")

    scorer: ScorerConfig = Field(default_factory=ScorerConfig)
    reward: RewardOptions = Field(default_factory=RewardOptions)


def load_reward_settings(
    path: str | Path | None = None,
    *,
    reward: Mapping[str, Any] | None = None,
    **scorer_overrides: Any,
) -> RewardSettings:
    """Load :class:`RewardSettings` from YAML (``path`` or ``$RMR1_CONFIG``), variables, overrides.

    Args:
        path: the YAML file; ``None`` reads ``$RMR1_CONFIG`` if set, else defaults only.
        reward: overrides for the ``reward:`` section.
        scorer_overrides: overrides for the scorer part, as for :func:`load_config`.

    For training, the scorer's ``neutralize_markup`` guard (where the core has it) defaults to
    on: a policy must not be able to forge the judge's verdict markup in its answers.
    """
    path = path or os.environ.get(CONFIG_ENV) or None
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"cannot read config file {path}: {error}") from error
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(
                f"config file {path} must hold a mapping, got {type(loaded).__name__}"
            )
        raw = dict(loaded or {})
    from_file = raw.pop("reward", None) or {}
    if not isinstance(from_file, dict):
        raise ConfigError(f"'reward' in {path} must be a mapping, got {type(from_file).__name__}")
    try:
        scorer = ScorerConfig(**_deep_merge(_deep_merge(raw, _env_values()), scorer_overrides))
        options = _deep_merge(_deep_merge(from_file, _reward_env()), dict(reward or {}))
        for key in SERVICE_KEYS:
            options.pop(key, None)
        settings = RewardSettings(scorer=scorer, reward=options)  # errors read "reward.<key>"
    except ValidationError as error:
        raise ConfigError(_describe(error, path)) from None
    guard = "neutralize_markup"
    if guard in ScorerConfig.model_fields and guard not in settings.scorer.model_fields_set:
        settings.scorer = settings.scorer.model_copy(update={guard: True})
    return settings


def _reward_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, raw in (os.environ if environ is None else environ).items():
        if name.startswith(REWARD_ENV_PREFIX) and len(name) > len(REWARD_ENV_PREFIX):
            try:
                value = yaml.safe_load(raw) if raw else raw
            except yaml.YAMLError:
                value = raw
            values[name[len(REWARD_ENV_PREFIX) :].lower()] = value
    return values


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
