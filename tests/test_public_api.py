"""The public API: ``rmr1_plugins.__all__`` names what the docs import, and every name exists."""

import ast
import importlib
import re
import types
from pathlib import Path

import rmr1_plugins

ROOT = Path(__file__).parents[1]
PAGES = sorted([ROOT / "README.md", *ROOT.glob("docs/**/*.md"), *ROOT.glob("adapters/*/README.md")])
# What the docs use from Python: groups and group scoring, the settings loader, the reward
# config, the verifiable reward, the error bases.
DOCUMENTED = {
    "Group",
    "GroupScoring",
    "score_groups",
    "load_reward_settings",
    "RewardConfig",
    "verifiable_reward",
    "RMR1Error",
    "UsageError",
}


def imports(source: str) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every ``from X import ...`` in a code block (a block that is not
    valid Python on its own, ``f(a=1, ...)`` say, is read for its import lines only)."""
    flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    try:
        tree = compile(source, "<block>", "exec", flags=flags)
    except SyntaxError:
        lines = [line for line in source.splitlines() if line.startswith(("from ", "import "))]
        tree = compile("\n".join(lines), "<block>", "exec", flags=flags)
    return [
        (node.module or "", [alias.name for alias in node.names])
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    ]


def documented_imports() -> list[tuple[str, str, list[str]]]:
    found = []
    for page in PAGES:
        for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.S):
            found += [(page.name, module, names) for module, names in imports(block)]
    return found


def test_every_exported_name_exists_and_is_public():
    assert len(set(rmr1_plugins.__all__)) == len(rmr1_plugins.__all__)
    for name in rmr1_plugins.__all__:
        value = getattr(rmr1_plugins, name)  # AttributeError names a missing one
        assert not name.startswith("_") and not isinstance(value, types.ModuleType), name
    assert set(rmr1_plugins.__all__) >= DOCUMENTED


def test_star_import_gives_exactly_all():
    namespace: dict = {}
    exec("from rmr1_plugins import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(rmr1_plugins.__all__)


def test_docs_import_public_names_from_the_package():
    found = documented_imports()
    assert any(module == "rmr1_plugins" for _, module, _ in found)
    for page, module, names in found:
        if module == "rmr1_plugins":
            assert set(names) <= set(rmr1_plugins.__all__), (page, names)
        elif module.startswith("rmr1_plugins."):
            # a submodule only for what the package does not export (a backend class, say)
            assert not set(names) & set(rmr1_plugins.__all__), (page, module, names)
            loaded = importlib.import_module(module)
            assert all(hasattr(loaded, name) for name in names), (page, module, names)
