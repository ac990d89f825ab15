"""Configuration: pydantic models, loaded from a YAML file, ``RMR1_*`` variables and overrides.

Priority, highest first: explicit overrides (CLI flags), environment variables, the YAML file,
defaults. Nested keys use ``__`` in variables: ``RMR1_BACKEND__MODEL=/models/rm``,
``RMR1_SAMPLING__MAX_NEW_TOKENS=2048``. Unknown keys are rejected with the key's path, and so are
unknown template, parser and backend names (the message lists the registered ones).

There is one loader, :func:`rmr1_plugins.rewards.load_reward_settings`; :func:`load_config` is
its scorer part with ``training=False`` (the markup guard keeps its default, off).

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
import re
from collections.abc import Container, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

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

    @field_validator("name")
    @classmethod
    def _known_backend(cls, name: str) -> str:
        return registered("backends", name)


class SamplingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(4096, gt=0, description="tokens per judgment at most")
    temperature: float = Field(0.0, ge=0, description="sampling temperature, 0 is greedy")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass")
    num_samples: int = Field(1, gt=0, description="samples per order, majority-voted")
    seed: int | None = Field(None, description="sampling seed, where the backend takes one")
    verdict_probs: bool = Field(
        False, description="read P(A) against P(B) at the verdict token (vllm, openai, hf)"
    )

    def params(self) -> SamplingParams:
        return SamplingParams(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            num_samples=self.num_samples,
            seed=self.seed,
            verdict_probs=self.verdict_probs,
        )


class ScorerConfig(BaseModel):
    """Everything needed to build a :class:`rmr1_plugins.Scorer`."""

    model_config = ConfigDict(extra="forbid")

    template: str = Field(
        "rmr1-instruct",
        description="a registered judge prompt template (default: the one RM-R1 uses for the "
        "model's name, see templates.template_for_model)",
    )
    parser: str = Field("strict", description="a registered verdict parser")
    order: Literal["given", "random", "both"] = Field(
        "given", description="A/B order of each pair: as given, one random swap, or both orders"
    )
    seed: int = Field(0, description="seed of order=random")
    cache_size: int = Field(4096, ge=0)
    neutralize_markup: bool = Field(
        False, description="defuse verdict markup inside candidate responses before judging"
    )
    cache_sampled: bool = Field(False, description="also cache sampled judgments")
    backend: BackendConfig = Field(default_factory=BackendConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)

    @field_validator("template")
    @classmethod
    def _known_template(cls, name: str) -> str:
        return registered("templates", name)

    _template_choice: str = PrivateAttr("set explicitly")

    @model_validator(mode="after")
    def _template_from_model(self) -> ScorerConfig:
        """Unless a template is set, take the one RM-R1 would use for the model's name."""
        if "template" not in self.model_fields_set:
            from rmr1_plugins.templates import template_for_model

            name, why = template_for_model(self.backend.model)
            self.__dict__["template"] = name  # not marked as set: a later model may choose again
            self._template_choice = (
                f"from the model name, {why}" if self.backend.model else "the default: no model"
            )
        return self

    @property
    def template_choice(self) -> str:
        """How :attr:`template` was chosen: set explicitly, or from the model's name."""
        return self._template_choice

    @field_validator("parser")
    @classmethod
    def _known_parser(cls, name: str) -> str:
        return registered("parsers", name)

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


def registered(kind: str, name: str) -> str:
    """``name`` if a plugin registered it as one of ``kind``; else a :class:`ValueError` that
    lists the registered names (a typo fails when the configuration loads, not at first use)."""
    from rmr1_plugins.plugins import UnknownNameError, get_plugins

    try:
        get_plugins().get(kind, name)
    except UnknownNameError as error:
        raise ValueError(str(error)) from None
    return name


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` laid over it; nested mappings are merged key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def merge_layers(*layers: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The layers (file, variables, flags; lowest first) merged with :func:`deep_merge`, and a
    note for each backend switch: a layer that names another backend than the layers below it
    drops their ``backend.options`` (an ``openai`` server's ``base_url`` means nothing to
    ``constant``); options it gives itself are kept."""
    merged: dict[str, Any] = {}
    notes = []
    for layer in layers:
        below = merged.get("backend")
        above = layer.get("backend")
        if isinstance(below, dict) and isinstance(above, dict):
            old, new = below.get("name", "hf"), above.get("name")
            dropped = below.get("options")
            if new is not None and new != old and dropped:
                keys = ", ".join(map(str, dropped)) if isinstance(dropped, dict) else dropped
                notes.append(f"backend {new} replaces {old}: {old}'s options left out ({keys})")
                merged = {**merged, "backend": {k: v for k, v in below.items() if k != "options"}}
        merged = deep_merge(merged, dict(layer))
    return merged, notes


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
    """The :class:`ScorerConfig` of an offline judge (``rmr1 score``, ``rmr1 eval``, a teacher).

    The same loader as every trainer: ``load_reward_settings(path, training=False,
    **overrides).scorer`` (see :func:`rmr1_plugins.rewards.load_reward_settings`), so one file
    builds the same scorer everywhere, except that ``training=True`` turns the markup guard on
    by default. ``path`` is a YAML file, a mapping already read from one, or ``None`` for
    ``$RMR1_CONFIG`` (if set). Overrides are nested dicts (``backend={"model": "x"}``) and win
    over ``RMR1_*`` variables, which win over the file. A ``reward:`` section is validated too.
    """
    from rmr1_plugins.rewards.config import load_reward_settings

    return load_reward_settings(path, training=False, **overrides).scorer


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
    for name, path in env_keys(environ, prefix=prefix, fields=fields).items():
        raw = (os.environ if environ is None else environ)[name]
        try:
            value = yaml.safe_load(raw) if raw else raw
        except yaml.YAMLError:
            value = raw
        target = values
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    return values


def env_keys(
    environ: Mapping[str, str] | None = None,
    *,
    prefix: str = ENV_PREFIX,
    fields: Container[str] | None = ScorerConfig.model_fields,
) -> dict[str, list[str]]:
    """The variables :func:`env_values` reads, each with its key path (``sampling``,
    ``temperature``)."""
    found = {}
    for name in os.environ if environ is None else environ:
        if not name.startswith(prefix) or len(name) == len(prefix):
            continue
        path = name[len(prefix) :].lower().split("__")
        if fields is None or path[0] in fields:
            found[name] = path
    return found


def env_sources(
    overrides: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    *,
    prefix: str = ENV_PREFIX,
    fields: Container[str] | None = ScorerConfig.model_fields,
) -> dict[str, str]:
    """Which variable set each dotted key (``sampling.temperature`` ->
    ``RMR1_SAMPLING__TEMPERATURE``), leaving out keys that ``overrides`` (flags) set instead,
    so that an error can name the variable a bad value came from."""
    sources = {}
    for name, path in env_keys(environ, prefix=prefix, fields=fields).items():
        given: Any = overrides
        for part in path:
            given = given.get(part) if isinstance(given, Mapping) else None
        if given is None:
            sources[".".join(path)] = name
    return sources


def _describe(error: ValidationError, path: str | Path | None, prefix: str = "") -> str:
    where = f" in {path}" if path else ""
    return "\n".join([f"invalid configuration{where}:", *error_lines(error, prefix)])


_PYDANTIC_PREFIX = re.compile(r"^(Value|Assertion) error, ")


def error_lines(
    error: ValidationError, prefix: str = "", sources: Mapping[str, str] | None = None
) -> list[str]:
    """One ``  <key>: <problem>`` line per problem; keys are dotted paths starting with ``prefix``
    (``"reward."`` gives ``reward.win``; a problem of the whole model is named ``reward``).
    ``sources`` (from :func:`env_sources`, keyed without ``prefix``) name the variable that set
    a key: ``(from RMR1_SAMPLING__TEMPERATURE)``."""
    lines = []
    for problem in error.errors():
        loc = ".".join(str(part) for part in problem["loc"])
        key = (prefix + loc).rstrip(".")
        message = "unknown key" if problem["type"] == "extra_forbidden" else problem["msg"]
        message = _PYDANTIC_PREFIX.sub("", message)
        variable = (sources or {}).get(loc)
        if variable is None and problem["type"] == "extra_forbidden":
            # an unknown key: the variable naming it, or one naming a key inside it
            variable = next(
                (v for k, v in (sources or {}).items() if k.startswith(f"{loc}.")), None
            )
        if variable:
            message += f" (from {variable})"
        lines.append(f"  {key or '(top level)'}: {message}")
    return lines
