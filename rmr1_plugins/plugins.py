"""Plugin registry: templates, parsers, backends and grouping strategies, by name.

Plugins are modules with ``@hookimpl`` functions for the hooks in :mod:`rmr1_plugins.hookspecs`,
found through the ``rmr1_plugins`` entry-point group (the built-ins register the same way, see
:mod:`rmr1_plugins.builtins`)::

    [project.entry-points.rmr1_plugins]
    my_plugin = "my_package.rmr1_plugin"

    # my_package/rmr1_plugin.py
    from rmr1_plugins import hookimpl

    @hookimpl
    def rmr1_register_backends(register):
        register("my-backend", "my_package.backend:MyBackend")

A target is an object or a lazy ``"module:attr"`` string imported on first use, so registering a
backend never imports its engine. The getters return what a caller uses: a template, parser or
strategy instance, a backend class. ``RMR1_DISABLED_PLUGINS=name1,name2`` blocks entry points by
name. Loading happens once per process on first lookup, never at import time.
"""

from __future__ import annotations

import difflib
import importlib
import os
import threading
from dataclasses import dataclass
from typing import Any

import pluggy

from rmr1_plugins import builtins
from rmr1_plugins.errors import UsageError
from rmr1_plugins.hookspecs import KINDS, PROJECT, HookSpecs, Subparsers


class UnknownNameError(UsageError, KeyError):
    """A name that nothing registered; the message lists what is available."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass
class Entry:
    name: str
    target: Any
    plugin: str

    @property
    def description(self) -> str:
        target = self.target
        return target if isinstance(target, str) else f"{type(target).__module__}.{target!r}"


class Registry:
    """Names to targets for one kind (``templates``, ``parsers``, ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.singular = "strategy" if kind == "strategies" else kind.removesuffix("s")
        self.entries: dict[str, Entry] = {}
        self._resolved: dict[str, Any] = {}

    def add(self, name: str, target: Any, plugin: str) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(
                f"{plugin}: a {self.kind} name must be a non-empty string, got {name!r}"
            )
        old = self.entries.get(name)
        if old is not None and old.target == target:
            return  # the same plugin loaded again (re-entrant loading in worker processes)
        if old is not None:
            raise ValueError(
                f"{self.singular} {name!r} is registered twice: by {old.plugin} "
                f"({old.description}) and by {plugin}"
            )
        self.entries[name] = Entry(name, target, plugin)

    def get(self, name: str) -> Any:
        """The target registered as ``name``, importing a ``"module:attr"`` string on first use."""
        if name not in self.entries:
            hint = difflib.get_close_matches(name, list(self.entries), n=1)
            did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
            raise UnknownNameError(
                f"unknown {self.singular} {name!r}.{did_you_mean} "
                f"Available: {', '.join(sorted(self.entries)) or 'none'}"
            )
        if name not in self._resolved:
            target = self.entries[name].target
            if isinstance(target, str):
                module, _, attr = target.partition(":")
                target = getattr(importlib.import_module(module), attr)
            self._resolved[name] = target
        return self._resolved[name]

    def names(self) -> list[str]:
        return sorted(self.entries)


class Plugins:
    """A plugin manager and one registry per kind."""

    def __init__(self, load_entry_points: bool = True) -> None:
        self.manager = pluggy.PluginManager(PROJECT)
        self.manager.add_hookspecs(HookSpecs)
        blocked = os.environ.get("RMR1_DISABLED_PLUGINS", "")
        for name in filter(None, (part.strip() for part in blocked.split(","))):
            self.manager.set_blocked(name)
        if load_entry_points:
            self.manager.load_setuptools_entrypoints(PROJECT)
        if self.manager.get_plugin("builtin") is None and not self.manager.is_blocked("builtin"):
            self.manager.register(builtins, name="builtin")  # a source tree without metadata
        self.manager.check_pending()
        self.registries = {kind: Registry(kind) for kind in KINDS}
        for kind in KINDS:
            self._call_register(kind)

    def _call_register(self, kind: str) -> None:
        """Call ``rmr1_register_<kind>`` through pluggy, one plugin at a time, so that each
        entry records which plugin registered it."""
        hook = getattr(self.manager.hook, f"rmr1_register_{kind}")
        plugins: list[object] = []
        for impl in hook.get_hookimpls():
            if not any(impl.plugin is seen for seen in plugins):
                plugins.append(impl.plugin)
        registry = self.registries[kind]
        for plugin in plugins:
            others = [other for other in plugins if other is not plugin]
            call = self.manager.subset_hook_caller(hook.name, remove_plugins=others)
            label = self._label(plugin)

            def register(name: str, target: Any, label: str = label) -> None:
                registry.add(name, target, label)

            call(register=register)

    def add_subcommands(self, subparsers: Subparsers) -> None:
        """Let every plugin add its ``rmr1`` subcommands (the ``rmr1_add_subcommands`` hook)."""
        self.manager.hook.rmr1_add_subcommands(subparsers=subparsers)

    def _label(self, plugin: object) -> str:
        name = self.manager.get_name(plugin) or repr(plugin)
        for registered, dist in self.manager.list_plugin_distinfo():
            if registered is plugin:
                return f"{name} ({dist.project_name} {dist.version})"
        return name

    def get(self, kind: str, name: str) -> Any:
        return self.registries[kind].get(name)


_plugins: Plugins | None = None
_lock = threading.Lock()


def get_plugins() -> Plugins:
    """The process-wide plugins, loaded on first call (safe to call from any thread)."""
    global _plugins
    with _lock:
        if _plugins is None:
            _plugins = Plugins()
        return _plugins


def reset_plugins() -> None:
    """Forget loaded plugins; the next :func:`get_plugins` loads them again."""
    global _plugins
    with _lock:
        _plugins = None


def registered(kind: str, name: str) -> str:
    """``name`` if a plugin registered it as one of ``kind``; else a :class:`ValueError` that
    lists the registered names (a typo fails when the configuration loads, not at first use)."""
    try:
        get_plugins().get(kind, name)
    except UnknownNameError as error:
        raise ValueError(str(error)) from None
    return name


def _instance(target: Any) -> Any:
    return target() if isinstance(target, type) else target


def get_template(name: str) -> Any:
    """A template instance by name (see :class:`rmr1_plugins.templates.PromptTemplate`)."""
    return _instance(get_plugins().get("templates", name))


def get_parser(name: str) -> Any:
    """A parser instance by name (see :class:`rmr1_plugins.parsing.VerdictParser`)."""
    return _instance(get_plugins().get("parsers", name))


def get_backend_class(name: str) -> Any:
    """A backend class by name: backends are built with a model and options (see
    :meth:`rmr1_plugins.scorer_config.ScorerConfig.build_backend`)."""
    return get_plugins().get("backends", name)


def get_strategy(name: str, **options: Any) -> Any:
    """A strategy instance by name, built with ``options`` (e.g. ``budget=16`` for
    ``adaptive``); a wrong option is a ``ValueError`` naming the strategy.

    >>> get_strategy("adaptive", budget=16).budget
    16
    """
    target = get_plugins().get("strategies", name)
    if not isinstance(target, type):
        if options:
            raise ValueError(f"strategy {name!r} is an instance and takes no options")
        return target
    try:
        return target(**options)
    except TypeError as error:
        raise ValueError(f"strategy {name!r}: bad strategy_options: {error}") from None
