import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest

from rmr1_plugins import hookimpl, plugins
from rmr1_plugins.plugins import Plugins, Registry, UnknownNameError


class DemoPlugin:
    @hookimpl
    def rmr1_register_parsers(self, register):
        register("always-b", "rmr1_plugins.parsing:StrictParser")


def test_builtins_are_registered():
    p = Plugins()
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
        "print(sorted(m for m in ('torch','vllm','transformers','trl') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_optional_dependency_names_the_extra():
    from rmr1_plugins._imports import require

    with pytest.raises(ImportError, match=r"pip install 'rmr1-plugins\[vllm\]'"):
        require("surely_not_installed_module", "vllm")
