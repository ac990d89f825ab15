"""One error base: every exception class of the package and the adapters derives from RMR1Error
(keeping its builtin base), and the user-fixable ones from UsageError."""

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

from rmr1_plugins.errors import RMR1Error, UsageError

ROOT = Path(__file__).parents[1]
ADAPTERS = [ROOT / "adapters" / name for name in ("trl", "openrlhf", "verl")]
PACKAGES = ["rmr1_plugins", "rmr1_trl", "rmr1_openrlhf", "rmr1_verl"]

# Mistakes a user can fix; the CLI prints them as one error line and exits 2.
USAGE = {
    "ConfigError",
    "InputError",
    "OutputError",
    "RowError",
    "SourceError",
    "StageError",
    "TemplateError",
    "UnknownNameError",
    "UsageError",
}


def exception_classes(monkeypatch):
    """Every exception class (warnings aside) defined in the packages, by ``module.name``;
    modules that need a trainer this environment lacks are read as source and must define none."""
    for path in ADAPTERS:
        monkeypatch.syspath_prepend(str(path))
    found = {}
    for package in PACKAGES:
        top = importlib.import_module(package)
        for info in [None, *pkgutil.walk_packages(top.__path__, f"{package}.")]:
            name = package if info is None else info.name
            try:
                module = importlib.import_module(name)
            except ModuleNotFoundError as missing:
                assert not (missing.name or "rmr1").startswith("rmr1"), missing  # a trainer
                source = Path(importlib.util.find_spec(name).origin).read_text()
                bases = [
                    ast.unparse(base)
                    for node in ast.walk(ast.parse(source))
                    if isinstance(node, ast.ClassDef)
                    for base in node.bases
                ]
                assert not [b for b in bases if "Error" in b or "Exception" in b], name
                continue
            for _, cls in inspect.getmembers(module, inspect.isclass):
                error = issubclass(cls, BaseException) and not issubclass(cls, Warning)
                if error and cls.__module__ == name:
                    found[f"{name}.{cls.__name__}"] = cls
    return found


def test_every_exception_class_derives_from_the_base(monkeypatch):
    found = exception_classes(monkeypatch)
    names = {key.rsplit(".", 1)[1] for key in found}
    assert {"ConfigError", "BackendError", "SplitGroupError", "Overloaded", "BodyError"} <= names
    assert not [key for key, cls in found.items() if not issubclass(cls, RMR1Error)]
    usage = {key.rsplit(".", 1)[1] for key, cls in found.items() if issubclass(cls, UsageError)}
    assert usage == USAGE


@pytest.mark.parametrize(
    ("name", "builtin"),
    [
        ("rmr1_plugins.config.ConfigError", ValueError),
        ("rmr1_plugins.plugins.UnknownNameError", KeyError),
        ("rmr1_plugins.jsonl.InputError", ValueError),
        ("rmr1_plugins.jsonl.OutputError", OSError),
        ("rmr1_plugins.templates.TemplateError", ValueError),
        ("rmr1_plugins.backends.base.BackendError", RuntimeError),
        ("rmr1_plugins.rewards.cohort_table.Overloaded", RuntimeError),
        ("rmr1_plugins.rewards.inputs.SampleError", ValueError),
        ("rmr1_plugins.serve.app.BodyError", ValueError),
    ],
)
def test_builtin_bases_are_kept(name, builtin):
    module, _, attr = name.rpartition(".")
    assert issubclass(getattr(importlib.import_module(module), attr), builtin)


def test_the_reward_layers_old_module_paths_are_gone():
    # They were never released (no tag, nothing published): the one path is rmr1_plugins.rewards.
    for old in ("grouping", "reference_reward", "reward_service", "cohorts", "verifiable"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(f"rmr1_plugins.{old}")
