"""Configuration: pydantic models, loaded from a YAML file, ``RMR1_*`` variables and overrides.

Priority, highest first: explicit overrides (CLI flags), environment variables, the YAML file,
defaults. Nested keys use ``__`` in variables: ``RMR1_BACKEND__MODEL=/models/rm``,
``RMR1_SAMPLING__MAX_NEW_TOKENS=2048``. Unknown keys are rejected with the key's path.

Example YAML::

    template: rmr1-instruct
    parser: strict
    order: both
    backend:
      name: vllm
      model: gaotang/RM-R1-Qwen2.5-Instruct-7B
      options: {tensor_parallel_size: 2}
    sampling: {max_new_tokens: 4096, temperature: 0.0, num_samples: 1}
"""

from __future__ import annotations

import os
from collections.abc import Container, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rmr1_plugins.backends.base import Backend, SamplingParams
from rmr1_plugins.errors import UsageError

ENV_PREFIX = "RMR1_"


class ConfigError(UsageError, ValueError):
    """A configuration file, variable or flag is invalid; the message names the key."""


class BackendConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("hf", description="registered backend name: hf, vllm, openai, constant, ...")
    model: str | None = Field(None, description="model id, local folder, or served model name")
    options: dict[str, Any] = Field(default_factory=dict, description="backend-specific options")


class SamplingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(4096, gt=0)
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    num_samples: int = Field(1, gt=0, description="samples per order, majority-voted")
    seed: int | None = None
    verdict_probs: bool = Field(
        False, description="read P(A) against P(B) at the verdict token (vllm, openai, hf)"
    )

    def params(self) -> SamplingParams:
        return SamplingParams(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            n=self.num_samples,
            seed=self.seed,
            verdict_probs=self.verdict_probs,
        )


class ScorerConfig(BaseModel):
    """Everything needed to build a :class:`rmr1_plugins.Scorer`."""

    model_config = ConfigDict(extra="forbid")

    template: str = "rmr1-instruct"
    parser: str = "strict"
    order: Literal["given", "random", "both"] = "given"
    seed: int = 0
    cache_size: int = Field(4096, ge=0)
    neutralize_markup: bool = Field(
        False, description="defuse verdict markup inside candidate responses (guards.py)"
    )
    cache_sampled: bool = Field(False, description="also cache sampled judgments")
    backend: BackendConfig = Field(default_factory=BackendConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)

    def build_backend(self) -> Backend:
        from rmr1_plugins.plugins import get_backend_class

        backend_class = get_backend_class(self.backend.name)
        try:
            return backend_class(self.backend.model, self.backend.options)
        except ValidationError as error:
            raise ConfigError(_describe(error, None, prefix="backend.options.")) from None
        except (ValueError, TypeError) as error:  # a missing model name, say
            raise ConfigError(f"cannot build backend {self.backend.name!r}: {error}") from None

    def build_scorer(self, backend: Backend | None = None):
        from rmr1_plugins.scorer import Scorer

        return Scorer(
            backend or self.build_backend(),
            self.template,
            self.parser,
            order=self.order,
            seed=self.seed,
            sampling=self.sampling.params(),
            cache_size=self.cache_size,
            neutralize_markup=self.neutralize_markup,
            cache_sampled=self.cache_sampled,
        )


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` laid over it; nested mappings are merged key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping held by a YAML config file (empty for an empty file)."""
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from error
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping, got {type(loaded).__name__}")
    return loaded or {}


def load_config(
    path: str | Path | Mapping[str, Any] | None = None, **overrides: Any
) -> ScorerConfig:
    """Load a :class:`ScorerConfig` from YAML, ``RMR1_*`` variables and keyword overrides.

    ``path`` is a YAML file or a mapping already read from one. Overrides are nested dicts
    (``backend={"model": "x"}``) and win over everything; the file gives the defaults that
    variables can change. A ``reward:`` section is left to
    :func:`rmr1_plugins.rewards.load_reward_settings`, so trainers and ``rmr1 score`` share a file.
    """
    from_file: dict[str, Any] = {}
    if isinstance(path, Mapping):
        from_file, path = dict(path), None
    elif path is not None:
        from_file = read_config_file(path)
    from_file.pop("reward", None)
    try:
        env_only = env_values()
        return ScorerConfig(**deep_merge(deep_merge(from_file, env_only), overrides))
    except ValidationError as error:
        raise ConfigError(_describe(error, path)) from None


def env_values(
    environ: Mapping[str, str] | None = None,
    *,
    prefix: str = ENV_PREFIX,
    fields: Container[str] | None = ScorerConfig.model_fields,
) -> dict[str, Any]:
    """The ``<prefix><KEY>[__<KEY>...]`` variables as a nested dict; values are read as YAML.

    Only variables whose first key is in ``fields`` count (by default the :class:`ScorerConfig`
    fields, so other ``RMR1_`` variables such as ``RMR1_DISABLED_PLUGINS`` are left alone);
    ``fields=None`` keeps every variable with the prefix, so that a misspelt key is reported.
    """
    values: dict[str, Any] = {}
    for name, raw in (os.environ if environ is None else environ).items():
        if not name.startswith(prefix) or len(name) == len(prefix):
            continue
        path = name[len(prefix) :].lower().split("__")
        if fields is not None and path[0] not in fields:
            continue
        try:
            value = yaml.safe_load(raw) if raw else raw
        except yaml.YAMLError:
            value = raw
        target = values
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    return values


def _describe(error: ValidationError, path: str | Path | None, prefix: str = "") -> str:
    where = f" in {path}" if path else ""
    return "\n".join([f"invalid configuration{where}:", *error_lines(error, prefix)])


def error_lines(error: ValidationError, prefix: str = "") -> list[str]:
    """One ``  <key>: <problem>`` line per problem; keys are dotted paths starting with ``prefix``
    (``"reward."`` gives ``reward.win``; a problem of the whole model is named ``reward``)."""
    lines = []
    for problem in error.errors():
        key = (prefix + ".".join(str(part) for part in problem["loc"])).rstrip(".")
        message = "unknown key" if problem["type"] == "extra_forbidden" else problem["msg"]
        lines.append(f"  {key or '(top level)'}: {message}")
    return lines
