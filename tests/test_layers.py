"""The core's layers, read from the source with ``ast``: no import cycle, no import upwards.

Every ``import`` and ``from ... import`` in ``rmr1_plugins`` counts, at any depth: inside
functions, ``try`` blocks and ``if TYPE_CHECKING:`` blocks too (a type-only import upwards is
still a layer a reader must hold in mind). Not counted: the ``"module:attr"`` strings plugins
register (:mod:`rmr1_plugins.builtins`), imported by the registry on first use, and the implicit
import of a module's parent packages.
"""

from __future__ import annotations

import ast
import itertools
from dataclasses import dataclass
from pathlib import Path

import rmr1_plugins

# Lowest first. A module may import its own layer and the layers below it. A name is a module or
# a package (all of its modules); the longest matching name decides.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # schema, errors, the plugin registry and its hook specs, reading settings files
    (
        "base",
        (
            "errors",
            "schema",
            "hookspecs",
            "builtins",
            "plugins",
            "config",
            "_imports",
            "offload",
            "jsonl",
        ),
    ),
    # a prompt in, a verdict out
    (
        "judge",
        ("templates", "parsing", "guards", "verdict_probs", "backends", "scorer", "scorer_config"),
    ),
    # verdicts to rewards, the same in every trainer
    ("rewards", ("rewards",)),
    # what trainers and people call: the one settings loader, the CLI, the servers
    ("faces", ("settings", "cli_options", "cli", "serve")),
    ("eval", ("eval",)),
    ("recipe", ("recipe",)),
    # fakes for tests, tools that write the docs, and the public API (the package's __init__)
    ("top", ("testing", "devtools", "")),
]
# Never imported at module level by the core (function bodies may, where the feature needs it).
TRAINERS = ("trl", "verl", "openrlhf", "ray")
PACKAGE = "rmr1_plugins"


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (a package's __init__ for a name from it)
    where: str  # file:line
    module_level: bool  # runs when the module is imported (not in a function, not type-only)


def modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``root`` (the package folder)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, module_level: bool = True):
    """Every import node under ``node``, with whether it runs at import time."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, module_level
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _walk(child, False)
        elif isinstance(child, ast.If) and _type_checking(child):
            for stmt in child.body:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), False)
            for stmt in child.orelse:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), module_level)
        else:
            yield from _walk(child, module_level)


def imports(found: dict[str, Path], package: str, root: Path) -> list[Import]:
    """Every import in every module of ``found``; targets outside ``package`` keep their name."""
    edges = []
    for name, path in found.items():
        is_package = path.name == "__init__.py"
        where = f"{package}/{path.relative_to(root).as_posix()}"
        for node, module_level in _walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = name.split(".")[: len(name.split(".")) - node.level + is_package]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                for alias in node.names:  # a name that is a submodule imports that submodule
                    submodule = f"{module}.{alias.name}"
                    targets.append(submodule if submodule in found else module)
            for target in dict.fromkeys(targets):
                if target != name:
                    edges.append(Import(name, target, f"{where}:{node.lineno}", module_level))
    return edges


def layer_of(module: str, package: str = PACKAGE) -> int:
    """The index in :data:`LAYERS` of ``module``; a module missing from the table fails."""
    relative = module[len(package) + 1 :] if module != package else ""
    best = None
    for index, (_, names) in enumerate(LAYERS):
        for prefix in names:
            matches = relative == prefix or (prefix and relative.startswith(prefix + "."))
            if matches and (best is None or len(prefix) > len(best[1])):
                best = (index, prefix)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return best[0]


def upward(edges: list[Import], package: str = PACKAGE) -> list[str]:
    """One line per import from a lower layer into a higher one."""
    problems = []
    for edge in edges:
        if not edge.target.startswith(package):
            continue
        low, high = layer_of(edge.source, package), layer_of(edge.target, package)
        if high > low:
            problems.append(
                f"{edge.where}: {edge.source} ({LAYERS[low][0]}) imports {edge.target} "
                f"({LAYERS[high][0]}), a higher layer"
            )
    return problems


def cycles(edges: list[Import], package: str = PACKAGE) -> list[str]:
    """One line per import cycle between modules, each import with its file:line."""
    graph: dict[str, dict[str, Import]] = {}
    for edge in edges:
        if edge.target.startswith(package):
            graph.setdefault(edge.source, {}).setdefault(edge.target, edge)
    found: list[str] = []
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, {})):
            if nxt in path:
                loop = [*path[path.index(nxt) :], nxt]
                steps = [graph[a][b] for a, b in itertools.pairwise(loop)]
                found.append(" -> ".join(f"{s.source} ({s.where})" for s in steps) + f" -> {nxt}")
            elif nxt not in done:
                visit(nxt, [*path, nxt])
        done.add(node)

    for start in sorted(graph):
        if start not in done:
            visit(start, [start])
    return found


def trainer_imports(edges: list[Import]) -> list[str]:
    """One line per module-level import of a trainer (or Ray)."""
    return [
        f"{e.where}: {e.source} imports {e.target} at module level"
        for e in edges
        if e.module_level and e.target.split(".")[0] in TRAINERS
    ]


def only_re_exports(found: dict[str, Path]) -> list[str]:
    """Modules whose only statements are imports (besides a docstring and ``__all__``)."""
    lines = []
    for name, path in found.items():
        body = ast.parse(path.read_text(encoding="utf-8")).body
        rest = [
            stmt
            for stmt in body
            if not isinstance(stmt, ast.Import | ast.ImportFrom)
            and not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant))
            and not (
                isinstance(stmt, ast.Assign)
                and [getattr(t, "id", None) for t in stmt.targets] == ["__all__"]
            )
        ]
        reexports = any(isinstance(s, ast.Import | ast.ImportFrom) for s in body)
        if not rest and reexports and name != PACKAGE:  # the public API: test_public_api
            lines.append(f"{path}: {name} only re-exports")
    return lines


ROOT = Path(rmr1_plugins.__file__).parent
FOUND = modules(ROOT, PACKAGE)
EDGES = imports(FOUND, PACKAGE, ROOT)


def test_every_module_has_a_layer():
    for module in FOUND:
        layer_of(module)


def test_no_import_goes_up_a_layer():
    problems = upward(EDGES)
    assert not problems, "imports into a higher layer:\n" + "\n".join(problems)


def test_no_import_cycle():
    found = cycles(EDGES)
    assert not found, "import cycles:\n" + "\n".join(found)


def test_the_core_never_imports_a_trainer_at_module_level():
    problems = trainer_imports(EDGES)
    assert not problems, "\n".join(problems)


def test_no_module_only_re_exports():
    problems = only_re_exports(FOUND)
    assert not problems, "\n".join(problems)


def test_the_checks_find_what_they_look_for(tmp_path):
    """A small package with each fault: the checks name the import and its file:line."""
    pkg = tmp_path / PACKAGE
    (pkg / "rewards").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""api"""\n')
    (pkg / "rewards" / "__init__.py").write_text("from .engine import run\n__all__ = ['run']\n")
    (pkg / "errors.py").write_text(
        "import ray\n\n\ndef f():\n    from rmr1_plugins.rewards import engine\n    import verl\n"
    )
    (pkg / "rewards" / "engine.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import trl\n"
        "from rmr1_plugins.rewards import groups\n\n\ndef run():\n    pass\n"
    )
    (pkg / "rewards" / "groups.py").write_text(
        "import os\n\n\ndef f():\n    from . import engine\n"
    )
    found = modules(pkg, PACKAGE)
    edges = imports(found, PACKAGE, pkg)

    assert upward(edges) == [
        f"{PACKAGE}/errors.py:5: {PACKAGE}.errors (base) imports {PACKAGE}.rewards.engine "
        "(rewards), a higher layer"
    ]
    assert cycles(edges) == [
        f"{PACKAGE}.rewards.engine ({PACKAGE}/rewards/engine.py:4) -> {PACKAGE}.rewards.groups "
        f"({PACKAGE}/rewards/groups.py:5) -> {PACKAGE}.rewards.engine"
    ]
    assert trainer_imports(edges) == [
        f"{PACKAGE}/errors.py:1: {PACKAGE}.errors imports ray at module level"
    ]
    assert only_re_exports(found) == [
        f"{pkg / 'rewards' / '__init__.py'}: {PACKAGE}.rewards only re-exports"
    ]
    assert layer_of(f"{PACKAGE}.serve.app") == layer_of(f"{PACKAGE}.settings")
    assert layer_of(f"{PACKAGE}.scorer_config") == 1  # the longest name wins over "scorer"
