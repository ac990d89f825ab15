"""The one settings loader: the judge and its rewards from a YAML file, variables and overrides.

Every face reads its settings here: the trainers' integrations, ``rmr1 serve``, and (through
:func:`load_config`) ``rmr1 score``, ``rmr1 eval`` and the recipe's teachers; nothing below the
faces imports this module. One YAML file holds the judge (:class:`ScorerConfig`) and a
``reward:`` section (:class:`RewardConfig`)::

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
scorer part (``RMR1_BACKEND__MODEL=/models/rm``) and ``RMR1_REWARD__<KEY>`` the reward part
(``RMR1_REWARD__STRATEGY=pivot``); explicit arguments win over both (see
:mod:`rmr1_plugins.config`). docs/concepts/rewards.md has the table of keys.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rmr1_plugins.config import (
    ENV_PREFIX,
    ConfigError,
    deep_merge,
    env_sources,
    env_values,
    error_lines,
    merge_layers,
    read_config_file,
)
from rmr1_plugins.rewards.config import RewardConfig, decisive_values
from rmr1_plugins.scorer_config import ScorerConfig

CONFIG_ENV = "RMR1_CONFIG"
REWARD_ENV_PREFIX = f"{ENV_PREFIX}REWARD__"
SCORER_KEYS = ScorerConfig.model_fields


class RewardSettings(BaseModel):
    """The judge (``scorer``) and how its verdicts become rewards (``reward``)."""

    model_config = ConfigDict(extra="forbid")

    scorer: ScorerConfig = Field(default_factory=ScorerConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)


def decisive_settings(settings: RewardSettings) -> dict[str, Any]:
    """The settings that decide a group's rewards, as plain JSON values.

    The ``reward:`` keys in :data:`~rmr1_plugins.rewards.config.DECISIVE_REWARD_KEYS`
    (``fallback`` resolved to its value) and the scorer's A/B ``order``. A cohort client sends
    them with every member; the cohort service compares them with its own.
    """
    return decisive_values(settings.reward, settings.scorer.order)


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
        ConfigError: naming every invalid key (``backend.nmae``, ``reward.service.timeout_s``) or
            name (``parser: unknown parser 'strikt' ...``) and the file.
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
    scorer_values, notes = merge_layers(raw, env_values(fields=SCORER_KEYS), scorer_overrides)
    for note in notes:  # a --backend flag over a file written for another backend
        print(f"note: {note}", file=sys.stderr)
    reward_values = deep_merge(
        deep_merge(section, env_values(prefix=REWARD_ENV_PREFIX, fields=None)), dict(reward or {})
    )
    problems: list[str] = []
    try:
        scorer = ScorerConfig.model_validate(scorer_values)
    except ValidationError as error:
        problems += error_lines(error, sources=env_sources(scorer_overrides, fields=SCORER_KEYS))
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


def load_config(
    path: str | Path | Mapping[str, Any] | None = None, **overrides: Any
) -> ScorerConfig:
    """The :class:`ScorerConfig` of an offline judge (``rmr1 score``, ``rmr1 eval``, a teacher).

    The same loader as every trainer: ``load_reward_settings(path, training=False,
    **overrides).scorer`` (see :func:`load_reward_settings`), so one file
    builds the same scorer everywhere, except that ``training=True`` turns the markup guard on
    by default. ``path`` is a YAML file, a mapping already read from one, or ``None`` for
    ``$RMR1_CONFIG`` (if set). Overrides are nested dicts (``backend={"model": "x"}``) and win
    over ``RMR1_*`` variables, which win over the file. A ``reward:`` section is validated too.
    """
    return load_reward_settings(path, training=False, **overrides).scorer


T = TypeVar("T")
_CACHED: dict[str, Any] = {}
CACHED_MAX = 64  # distinct option sets kept per process


def cached(options: Mapping[str, Any], context: Sequence[Any], load: Callable[[], T]) -> T:
    """``load()`` once per process and ``options``, ``context``, YAML file (``config``, else
    ``$RMR1_CONFIG``: path, size, modification time) and ``RMR1_*`` variables (read-only)."""
    path = options.get("config") or os.environ.get(CONFIG_ENV)
    try:
        stat = os.stat(path) if path else None
        file = [str(path), stat.st_size, stat.st_mtime_ns] if stat else None
    except OSError:
        file = [str(path), None, None]  # loading reports the missing file
    variables = sorted((k, v) for k, v in os.environ.items() if k.startswith(ENV_PREFIX))
    key = json.dumps([options, *context, file, variables], sort_keys=True, default=repr)
    if key not in _CACHED:
        if len(_CACHED) >= CACHED_MAX:
            _CACHED.pop(next(iter(_CACHED)))
        _CACHED[key] = load()
    return _CACHED[key]
