"""Plugin registry: templates, parsers, backends and grouping strategies, by name.

Plugins are modules with ``@hookimpl`` functions, found through the ``rmr1_plugins`` entry-point
group (the built-ins register the same way, see :mod:`rmr1_plugins.builtins`)::

    [project.entry-points.rmr1_plugins]
    my_plugin = "my_package.rmr1_plugin"

    # my_package/rmr1_plugin.py
    from rmr1_plugins import hookimpl

    @hookimpl
    def rmr1_register_backends(register):
        register("my-backend", "my_package.backend:MyBackend")

A target is an object or a lazy ``"module:attr"`` string imported on first use, so registering a
backend never imports its engine. ``RMR1_DISABLED_PLUGINS=name1,name2`` blocks entry points by
name. Loading happens once per process on first lookup, never at import time.
"""

from __future__ import annotations

import difflib
import importlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pluggy

PROJECT = "rmr1_plugins"
KINDS = ("templates", "parsers", "backends", "strategies")

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[[str, Any], None]


class HookSpecs:
    """Hook specifications. Each hook receives ``register(name, target)``."""

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
        """Register grouping strategies that turn pairwise verdicts into per-rollout rewards."""


class UnknownNameError(KeyError):
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
            from rmr1_plugins import builtins  # running from a source tree without metadata

            self.manager.register(builtins, name="builtin")
        self.manager.check_pending()
        self.registries = {kind: Registry(kind) for kind in KINDS}
        for plugin in self.manager.get_plugins():
            label = self._label(plugin)
            for kind in KINDS:
                hook = getattr(plugin, f"rmr1_register_{kind}", None)
                if hook is not None:
                    registry = self.registries[kind]
                    hook(register=lambda n, t, r=registry, p=label: r.add(n, t, p))

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


def _instance(target: Any) -> Any:
    return target() if isinstance(target, type) else target


def get_template(name: str) -> Any:
    """A template instance by name (see :class:`rmr1_plugins.templates.PromptTemplate`)."""
    return _instance(get_plugins().get("templates", name))


def get_parser(name: str) -> Any:
    """A parser instance by name (see :class:`rmr1_plugins.parsing.VerdictParser`)."""
    return _instance(get_plugins().get("parsers", name))


def get_backend_class(name: str) -> Any:
    return get_plugins().get("backends", name)


def get_strategy(name: str) -> Any:
    return get_plugins().get("strategies", name)
