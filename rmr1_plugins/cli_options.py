"""Command-line flags generated from pydantic fields, so that a flag and its key cannot drift.

A :class:`Flag` names one field of a model (``ScorerConfig.parser``, ``ServiceConfig.timeout_s``)
and where its value goes in the loader's nested overrides (``("sampling", "max_new_tokens")``).
:func:`add_flags` takes the flag's type, its choices (a ``Literal``), its help and the default it
shows from the field; every flag itself defaults to ``None``, so an unset flag leaves the YAML
file and the ``RMR1_*`` variables alone. :func:`overrides` gathers the flags given into the
nested dict that :func:`rmr1_plugins.settings.load_reward_settings` takes.

A flag is the field's name with dashes, unless the :class:`Flag` says otherwise (``--backend``
for ``backend.name``).
"""

from __future__ import annotations

import argparse
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

FIELD_ATTRIBUTE = "rmr1_field"  # set on each generated argparse action: its Flag


@dataclass(frozen=True)
class Flag:
    """One field of ``model`` as a flag; ``path`` is where its value goes in the overrides."""

    model: type[BaseModel]
    field: str
    path: tuple[str, ...]
    name: str | None = None  # default: the field's name with dashes

    @property
    def info(self) -> FieldInfo:
        return self.model.model_fields[self.field]

    def option(self, prefix: str = "") -> str:
        return f"--{prefix}{self.name or self.field.replace('_', '-')}"

    def dest(self, prefix: str = "") -> str:
        return self.option(prefix)[2:].replace("-", "_")

    def default(self) -> Any:
        return self.info.get_default(call_default_factory=True)


def value_type(info: FieldInfo) -> tuple[Any, tuple[Any, ...] | None]:
    """The type a flag converts its value with, and its choices (from a ``Literal``)."""
    annotation = info.annotation
    if get_origin(annotation) in (Union, types.UnionType):
        annotation, *rest = [arg for arg in get_args(annotation) if arg is not type(None)]
        if rest:
            raise TypeError(f"no flag for a field of type {info.annotation}")
    if get_origin(annotation) is Literal:
        choices = get_args(annotation)
        return type(choices[0]), choices
    if annotation in (bool, int, float, str):
        return annotation, None
    raise TypeError(f"no flag for a field of type {annotation}")


def shown(value: Any) -> str:
    """A default as the help shows it."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def help_text(flag: Flag, default: Any = None, note: str | None = None) -> str:
    """The field's description, then its default (or ``note`` about where it comes from)."""
    text = flag.info.description or flag.field.replace("_", " ")
    if note is not None:
        text = f"{text} (default: {note})"
    elif default is not None:
        text = f"{text} (default: {shown(default)})"
    return text.replace("%", "%%")


def add_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    flags: Iterable[Flag],
    *,
    prefix: str = "",
    defaults: Mapping[str, Any] | None = None,
    notes: Mapping[str, str] | None = None,
) -> None:
    """Add one flag per :class:`Flag`, typed and described by its field.

    ``prefix`` goes before each flag and its ``dest`` (``--teacher-model``); ``defaults`` change
    the default a help text shows, by field name, where a command has its own (a teacher's
    sampling); ``notes`` replace it with words (``the protocol's``).
    """
    defaults, notes = defaults or {}, notes or {}
    for flag in flags:
        kind, choices = value_type(flag.info)
        default = defaults.get(flag.field, flag.default())
        text = help_text(flag, default, notes.get(flag.field))
        if kind is bool:
            action = parser.add_argument(
                flag.option(prefix),
                dest=flag.dest(prefix),
                action=argparse.BooleanOptionalAction,
                default=None,
                help=text,
            )
        else:
            action = parser.add_argument(
                flag.option(prefix),
                dest=flag.dest(prefix),
                type=kind,
                choices=choices,
                default=None,
                help=text,
            )
        setattr(action, FIELD_ATTRIBUTE, flag)


def overrides(args: argparse.Namespace, flags: Iterable[Flag], prefix: str = "") -> dict:
    """The flags given (not ``None``) as nested overrides, each at its :attr:`Flag.path`."""
    out: dict[str, Any] = {}
    for flag in flags:
        value = getattr(args, flag.dest(prefix), None)
        if value is None:
            continue
        target = out
        for part in flag.path[:-1]:
            target = target.setdefault(part, {})
        target[flag.path[-1]] = value
    return out


def generated(parser: argparse.ArgumentParser) -> list[tuple[argparse.Action, Flag]]:
    """Every generated flag of ``parser`` and its subcommands, with its :class:`Flag`."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found += generated(child)
        elif hasattr(action, FIELD_ATTRIBUTE):
            found.append((action, getattr(action, FIELD_ATTRIBUTE)))
    return found
