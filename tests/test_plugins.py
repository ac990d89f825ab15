import ast
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pluggy
import pytest

from rmr1_plugins import cli, hookimpl, plugins
from rmr1_plugins.plugins import (
    Plugins,
    Registry,
    UnknownNameError,
    get_plugins,
    get_strategy,
    reset_plugins,
)
from rmr1_plugins.recipe.stages import StageError
from rmr1_plugins.rewards.adaptive import AdaptiveStrategy

PACKAGE = Path(__file__).parents[1] / "rmr1_plugins"


class DemoPlugin:
    @hookimpl
    def rmr1_register_parsers(self, register):
        register("always-b", "rmr1_plugins.parsing:StrictParser")


def test_builtins_are_registered():
    p = Plugins(load_entry_points=False)  # the demo plugin, installed by nox, adds a template
    assert p.registries["templates"].names() == ["rmr1-instruct", "rmr1-reasoning"]
    assert {"strict", "rmr1-eval", "rmr1-train"} <= set(p.registries["parsers"].names())
    assert {"hf", "constant"} <= set(p.registries["backends"].names())


def test_entry_point_plugins_are_loaded_and_blockable(monkeypatch):
    module = type(sys)("rmr1_demo_plugin")
    module.rmr1_register_parsers = DemoPlugin.rmr1_register_parsers.__get__(DemoPlugin())
    monkeypatch.setitem(sys.modules, "rmr1_demo_plugin", module)
    demo = EntryPoint("demo", "rmr1_demo_plugin", "rmr1_plugins")

    original = plugins.pluggy.PluginManager.load_setuptools_entrypoints

    def load(self, group, name=None):
        self.register(demo.load(), name=demo.name)
        return original(self, group, name)

    monkeypatch.setattr(plugins.pluggy.PluginManager, "load_setuptools_entrypoints", load)
    assert "always-b" in Plugins().registries["parsers"].names()
    monkeypatch.setenv("RMR1_DISABLED_PLUGINS", "demo")
    assert "always-b" not in Plugins().registries["parsers"].names()


def test_registry_errors_are_helpful():
    registry = Registry("backends")
    registry.add("vllm", "pkg.a:B", "one")
    registry.add("vllm", "pkg.a:B", "again")  # same target twice is fine (re-entrant loading)
    with pytest.raises(ValueError, match=r"registered twice: by one .*pkg\.a:B.* and by two"):
        registry.add("vllm", "pkg.other:C", "two")
    with pytest.raises(UnknownNameError, match=r"Did you mean 'vllm'.*Available: vllm"):
        registry.get("vlm")
    with pytest.raises(TypeError, match="non-empty string"):
        registry.add("", object(), "three")


def test_import_is_light_and_backends_are_lazy():
    code = (
        "import sys, rmr1_plugins; rmr1_plugins.get_plugins();"
        "print(sorted(m for m in ('torch','vllm','transformers','trl','verl','openrlhf','ray')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_optional_dependency_names_the_extra():
    from rmr1_plugins._imports import require

    with pytest.raises(ImportError, match=r"install the 'vllm' extra: pip install -e '\.\[vllm\]'"):
        require("surely_not_installed_module", "vllm")


@pytest.fixture
def with_plugins(monkeypatch):
    """Load extra plugin objects as if entry points had found them (``name=object``)."""

    def add(**found):
        original = pluggy.PluginManager.load_setuptools_entrypoints

        def load(self, group, name=None):
            for plugin_name, plugin in found.items():
                if not self.is_blocked(plugin_name):
                    self.register(plugin, name=plugin_name)
            return original(self, group, name)

        monkeypatch.setattr(pluggy.PluginManager, "load_setuptools_entrypoints", load)
        reset_plugins()

    yield add
    reset_plugins()  # the next get_plugins() loads the real plugins again


def module(name, **functions):
    made = type(sys)(name)
    for key, value in functions.items():
        setattr(made, key, value)
    return made


def test_only_marked_hooks_register_and_specname_is_honoured(with_plugins):
    def rmr1_register_parsers(register):  # unmarked: pluggy ignores it
        register("unmarked", "rmr1_plugins.parsing:StrictParser")

    @hookimpl(specname="rmr1_register_parsers")
    def add_my_parsers(register):
        register("by-specname", "rmr1_plugins.parsing:StrictParser")

    with_plugins(
        unmarked=module("unmarked", rmr1_register_parsers=rmr1_register_parsers),
        specname=module("specname", add_my_parsers=add_my_parsers),
    )
    names = get_plugins().registries["parsers"].names()
    assert "by-specname" in names and "unmarked" not in names
    assert get_plugins().registries["parsers"].entries["by-specname"].plugin == "specname"


def test_duplicate_names_across_plugins_name_both_plugins(with_plugins):
    @hookimpl
    def rmr1_register_templates(register):
        register("rmr1-instruct", "other.templates:Instruct")

    with_plugins(rival=module("rival", rmr1_register_templates=rmr1_register_templates))
    with pytest.raises(ValueError, match="template 'rmr1-instruct' is registered twice") as raised:
        get_plugins()
    message = str(raised.value)  # each plugin by its label, in the order they loaded
    assert "by rival" in message and "by builtin (rmr1-plugins " in message


def test_a_misspelled_hook_is_an_error_not_ignored(with_plugins):
    @hookimpl
    def rmr1_register_parser(register):  # no such hook: the plural is the spec
        register("never", "rmr1_plugins.parsing:StrictParser")

    with_plugins(typo=module("typo", rmr1_register_parser=rmr1_register_parser))
    with pytest.raises(pluggy.PluginValidationError, match="rmr1_register_parser"):
        get_plugins()


def test_getters_return_instances_and_strategies_take_options():
    assert type(get_strategy("adaptive", budget=16)) is AdaptiveStrategy
    assert get_strategy("adaptive", budget=16).budget == 16
    with pytest.raises(ValueError, match=r"strategy 'adaptive': bad strategy_options"):
        get_strategy("adaptive", bugdet=16)
    with pytest.raises(UnknownNameError, match=r"unknown strategy 'pivott'.*Did you mean 'pivot'"):
        get_strategy("pivott")


def test_plugins_add_cli_subcommands_and_usage_errors_exit_2(with_plugins, capsys):
    def cmd_fail(args):
        raise StageError(f"no stage called {args.stage!r}")  # never listed by hand in cli.main

    @hookimpl
    def rmr1_add_subcommands(subparsers):
        command = subparsers.add_parser("demo-fail", help="always a usage error")
        command.add_argument("stage")
        command.set_defaults(func=cmd_fail)

    with_plugins(commands=module("commands", rmr1_add_subcommands=rmr1_add_subcommands))
    assert cli.main(["demo-fail", "rl"]) == 2
    assert capsys.readouterr().err == "error: no stage called 'rl'\n"


def test_built_in_subcommands_come_through_the_same_hook(monkeypatch):
    """eval, serve and recipe are the builtin plugin's subcommands: blocking it removes them."""
    choices = lambda: set(cli.build_parser()._subparsers._group_actions[0].choices)  # noqa: E731
    assert {"eval", "serve", "recipe"} <= choices()
    monkeypatch.setenv("RMR1_DISABLED_PLUGINS", "builtin")
    reset_plugins()
    try:
        assert not {"eval", "serve", "recipe"} & choices()
    finally:
        monkeypatch.delenv("RMR1_DISABLED_PLUGINS")
        reset_plugins()


def test_hook_markers_and_errors_are_leaf_modules_with_no_cycle():
    """hookspecs and errors import nothing of the project; builtins, plugins and the strategies
    import each other only one way (no import, deferred or not, closes a cycle)."""
    modules = {
        "hookspecs": "hookspecs.py",
        "errors": "errors.py",
        "plugins": "plugins.py",
        "builtins": "builtins.py",
        "rewards.strategies": "rewards/strategies.py",
    }
    graph = {}
    for name, path in modules.items():
        tree = ast.parse((PACKAGE / path).read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rmr1_plugins"):
                base = node.module.removeprefix("rmr1_plugins").lstrip(".")
                imported |= {f"{base}.{a.name}".lstrip(".") for a in node.names} | {base}
            elif isinstance(node, ast.Import):
                imported |= {a.name.removeprefix("rmr1_plugins.") for a in node.names}
        graph[name] = imported & set(modules)
    assert graph["hookspecs"] == graph["errors"] == set()

    def reaches(start, goal, seen=()):
        return any(
            n == goal or (n not in seen and reaches(n, goal, (*seen, n))) for n in graph[start]
        )

    assert not [name for name in modules if reaches(name, name)]


def test_fake_judges_register_as_a_plugin_for_the_block_only():
    from rmr1_plugins.plugins import get_backend_class
    from rmr1_plugins.testing.judges import PLUGIN_NAME, VotesJudge, fake_judges
    from rmr1_plugins.testing.parity import RecordingJudge

    backends = get_plugins().registries["backends"]
    before = backends.names()
    with fake_judges():
        assert get_backend_class("votes") is VotesJudge
        assert get_backend_class("parity-judge") is RecordingJudge  # a lazy "module:attr"
        assert backends.entries["votes"].plugin == PLUGIN_NAME  # who registered it
        with fake_judges():  # re-entrant: the inner block leaves the outer's judges alone
            pass
        assert get_backend_class("ranker").name == "ranker"
    assert backends.names() == before
    assert get_plugins().manager.get_plugin(PLUGIN_NAME) is None
    with pytest.raises(UnknownNameError, match="unknown backend 'votes'"):
        get_backend_class("votes")


def test_the_fake_judges_fixture_registers_them_for_one_test(fake_judges):
    from rmr1_plugins.plugins import get_backend_class
    from rmr1_plugins.testing.judges import ScriptedByName

    judge = get_backend_class("scripted")(None, {})  # built as a configuration builds it
    assert isinstance(judge, ScriptedByName) and judge.model == "scripted-model"


def test_a_test_module_that_registers_at_import_stops_the_run(tmp_path):
    # rmr1_plugins.testing.fixtures compares the registry after collection with a fresh one.
    (tmp_path / "test_bad.py").write_text(
        "from rmr1_plugins.plugins import get_plugins\n"
        "from rmr1_plugins.testing import LongerWins\n"
        "get_plugins().registries['backends'].add('sneaky', LongerWins, 'test_bad')\n"
        "def test_nothing():\n    pass\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
         "rmr1_plugins.testing.fixtures", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert run.returncode != 0
    assert "changed the plugin registry at import: backends 'sneaky'" in run.stdout + run.stderr


def test_judges_registered_in_a_worker_stay_registered():
    # A Ray worker's setup hook registers them for good (in a child: never in the test process).
    code = (
        "import gc\n"
        "from rmr1_plugins.testing.judges import register_in_worker\n"
        "from rmr1_plugins.plugins import get_backend_class\n"
        "register_in_worker(); gc.collect()\n"
        "print(get_backend_class('ranker').name)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ranker", run.stderr
