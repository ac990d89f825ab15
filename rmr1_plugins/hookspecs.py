"""The hooks a plugin implements and their markers; a leaf module (it imports nothing of rmr1).

A plugin is a module or object whose functions are marked with :data:`hookimpl`; pluggy matches
each one to a spec below by its name, or by ``@hookimpl(specname=...)``. Unmarked functions are
ignored, and a marked one with no matching spec is an error when plugins load.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "rmr1_plugins"
KINDS = ("templates", "parsers", "backends", "strategies")

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[[str, Any], None]
Subparsers = argparse._SubParsersAction  # what ``ArgumentParser.add_subparsers()`` returns


class HookSpecs:
    """Hook specifications; each ``rmr1_register_<kind>`` receives ``register(name, target)``."""

    @hookspec
    def rmr1_register_templates(self, register: Register) -> None:
        """Register prompt templates (objects with ``name`` and ``render(example)``)."""

    @hookspec
    def rmr1_register_parsers(self, register: Register) -> None:
        """Register verdict parsers (objects with ``name`` and ``parse(completion)``)."""

    @hookspec
    def rmr1_register_backends(self, register: Register) -> None:
        """Register backend classes (subclasses of :class:`rmr1_plugins.backends.base.Backend`)."""

    @hookspec
    def rmr1_register_strategies(self, register: Register) -> None:
        """Register grouping strategies (subclasses of
        :class:`rmr1_plugins.rewards.strategies.Strategy`)."""

    @hookspec
    def rmr1_add_subcommands(self, subparsers: Subparsers) -> None:
        """Add ``rmr1`` subcommands with ``subparsers.add_parser(name, help=...)``.

        Give each one ``set_defaults(func=handler)``: ``rmr1`` calls ``handler(args)`` and exits
        with what it returns (``None`` is 0). A :class:`rmr1_plugins.errors.UsageError` raised
        there prints one ``error:`` line and exits with code 2, as for the built-in commands.
        """
