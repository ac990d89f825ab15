"""How settings are read: YAML files, ``RMR1_*`` variables and overrides, merged in layers.

The base of every settings model (the judge's :mod:`rmr1_plugins.scorer_config`, the rewards'
:mod:`rmr1_plugins.rewards.config`) and of the one loader, :mod:`rmr1_plugins.settings`.
Priority, highest first: explicit overrides (CLI flags), environment variables, the YAML file,
defaults. Nested keys use ``__`` in variables: ``RMR1_BACKEND__MODEL=/models/rm``. Errors name
the key, and the variable that set it. Nothing here knows a model or a plugin.
"""

from __future__ import annotations

import os
import re
from collections.abc import Container, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from rmr1_plugins.errors import UsageError

ENV_PREFIX = "RMR1_"


class ConfigError(UsageError, ValueError):
    """A configuration file, variable or flag is invalid; the message names the key."""


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


def env_values(
    environ: Mapping[str, str] | None = None,
    *,
    prefix: str = ENV_PREFIX,
    fields: Container[str] | None,
) -> dict[str, Any]:
    """The ``<prefix><KEY>[__<KEY>...]`` variables as a nested dict; values are read as YAML.

    Only variables whose first key is in ``fields`` count (the scorer's keys, say, so that other
    ``RMR1_`` variables such as ``RMR1_DISABLED_PLUGINS`` are left alone); ``fields=None`` keeps
    every variable with the prefix, so that a misspelt key is reported.
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
    fields: Container[str] | None,
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
    fields: Container[str] | None,
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
