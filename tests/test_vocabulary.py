"""One word per concept, checked on what users type: every settings model's keys, every flag of
every command, the ``RMR1_*`` variables and the public functions' keyword names.

- a time setting says its unit (``_s`` / ``_ms``, flags ``-s`` / ``-ms``);
- no name from :data:`SYNONYMS` (an old or second word for a concept that has its one word);
- a flag and its key spell the same word (``--foo-bar`` sets ``foo_bar``);
- an ``RMR1_*`` variable and its key too (``RMR1_FOO`` / ``RMR1_REWARD__FOO`` set ``foo``).

CHANGELOG.md's first entry has the table of words.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import rmr1_plugins
from rmr1_plugins.cli import build_parser
from rmr1_plugins.cli_options import FIELD_ATTRIBUTE
from rmr1_plugins.config import ENV_PREFIX
from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.scorer_config import ScorerConfig
from rmr1_plugins.settings import REWARD_ENV_PREFIX, load_reward_settings

ROOT = Path(__file__).resolve().parents[1]

# A second word for a concept that has one: {banned name: the one word}. Names are compared in
# snake case (a flag's dashes become underscores).
SYNONYMS = {
    "rule": "parser",
    "retries": "max_retries",
    "wait_s": "group_timeout_s",
    "cohort_wait_s": "group_timeout_s",
    "cohort_token": "token",
    "no_verdict": "on_unparsed (the setting) / unparsed (the noun)",
    "no_verdict_policy": "on_unparsed",
    "both_orders": "order='both'",
    "n": "num_samples",
    "win_reward": "win",
    "loss_reward": "loss",
    "fallback_reward": "fallback",
    "timeout": "timeout_s",
    "backoff": "retry_backoff_s",
    "placement_order": "placement",
}
# A name that says it holds a time: it must end with its unit.
TIME_WORDS = re.compile(r"timeout|wait|backoff|delay|every|interval|deadline|duration|sleep")
UNIT = re.compile(r"_(s|ms)$")
# RMR1_* variables that are not settings keys, and why.
NOT_SETTINGS = {
    "RMR1_CONFIG": "the configuration file itself (--config)",
    "RMR1_DISABLED_PLUGINS": "which installed plugins to skip (pluggy's blocklist)",
    "RMR1_TEST_CACHE": "where the tests keep their small models",
    "RMR1_SERVE_TOKEN": "rmr1 serve's --token (ServeOptions.token), kept out of the YAML",
    "RMR1_REWARD__": "the prefix of the reward: section's variables",
}
# Flags that set no key of their own name, and why.
NOT_A_KEY = {"--set": "KEY=VALUE overrides of the trainer's emitted config, repeated"}
# Python constants named RMR1_* (not variables): presets' data.
CONSTANTS = {"RMR1_MIX", "RMR1_ONE_GPU"}


def _modules() -> list[Any]:
    names = [m.name for m in pkgutil.walk_packages(rmr1_plugins.__path__, "rmr1_plugins.")]
    return [importlib.import_module(name) for name in names]


MODULES = _modules()


def settings_models() -> dict[str, list[str]]:
    """Every settings class of rmr1_plugins (pydantic models and ``*Config`` / ``*Params``
    dataclasses) and its field names."""
    found: dict[str, list[str]] = {}
    for module in MODULES:
        for name, cls in vars(module).items():
            if not inspect.isclass(cls) or cls.__module__ != module.__name__:
                continue
            if issubclass(cls, BaseModel):
                found[f"{module.__name__}.{name}"] = list(cls.model_fields)
            elif dataclasses.is_dataclass(cls) and name.endswith(("Config", "Params", "Options")):
                found[f"{module.__name__}.{name}"] = [f.name for f in dataclasses.fields(cls)]
    return found


def flags(parser: argparse.ArgumentParser, command: str = "rmr1") -> list[tuple[str, Any]]:
    """Every option of ``parser`` and its subcommands, with the command it belongs to."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                out += flags(child, f"{command} {name}")
        elif action.option_strings and action.dest not in ("help", "version"):
            out.append((command, action))
    return out


FLAGS = flags(build_parser())
FIELDS = [(model, field) for model, names in settings_models().items() for field in names]


def test_the_walk_sees_every_settings_model_and_command():
    models = settings_models()
    for name in ("scorer_config.ScorerConfig", "rewards.config.RewardConfig",
                 "serve.app.ServeOptions", "backends.openai.OpenAIOptions",
                 "recipe.prepare.PrepareConfig"):  # fmt: skip
        assert f"rmr1_plugins.{name}" in models
    commands = {command for command, _ in FLAGS}
    assert {"rmr1 score", "rmr1 serve", "rmr1 eval", "rmr1 recipe prepare"} <= commands


def test_a_time_setting_says_its_unit():
    bad = [f"{m}.{f}" for m, f in FIELDS if TIME_WORDS.search(f) and not UNIT.search(f)]
    bad += [
        f"{command} {action.option_strings[-1]}"
        for command, action in FLAGS
        if TIME_WORDS.search(action.dest) and not UNIT.search(action.dest)
    ]
    seconds = re.compile(r"\bseconds?\b|\bms\b|milliseconds")
    bad += [
        f"{command} {action.option_strings[-1]} (its help speaks of seconds)"
        for command, action in FLAGS
        if seconds.search(action.help or "") and not UNIT.search(action.dest)
    ]
    assert bad == []


def test_no_second_word_for_a_concept():
    names = [(f"{m}.{f}", f) for m, f in FIELDS]
    names += [(f"{c} {a.option_strings[-1]}", a.dest) for c, a in FLAGS]
    names += [(f"verl +reward.rmr1.{key}", key) for key in _verl_adapter_keys()]
    bad = [f"{where}: say {SYNONYMS[name]}" for where, name in names if name in SYNONYMS]
    assert bad == []


def test_no_public_function_takes_an_old_keyword():
    bad = []
    for module in MODULES:
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if dataclasses.is_dataclass(obj):
                continue  # data (a count, a record), not a setting; settings dataclasses: FIELDS
            callables = [obj]
            if inspect.isclass(obj):
                callables = [obj, *(v for k, v in vars(obj).items() if not k.startswith("_"))]
            for item in callables:
                if not callable(item) or (inspect.isclass(item) and issubclass(item, BaseModel)):
                    continue
                try:
                    parameters = inspect.signature(item).parameters
                except (TypeError, ValueError):
                    continue
                bad += [
                    f"{module.__name__}.{name}({p})"
                    for p in parameters
                    if p in SYNONYMS and p != "n"  # n: a count in helpers, never a setting
                ]
    assert bad == []


def test_a_flag_and_its_key_spell_the_same_word():
    bad = []
    for command, action in FLAGS:
        longs = [o for o in action.option_strings if o.startswith("--") and o[:5] != "--no-"]
        if not longs:
            continue  # a short option alone (-o)
        long = longs[0]
        if long[2:].replace("-", "_") != action.dest and long not in NOT_A_KEY:
            bad.append(f"{command} {long} sets {action.dest}")
        flag = getattr(action, FIELD_ATTRIBUTE, None)
        if flag is not None and flag.name is None:  # generated from a field: the field's word
            assert action.dest.endswith(flag.field), (command, long, flag.field)
    assert bad == []


@pytest.mark.parametrize(
    ("prefix", "model", "section"),
    [(ENV_PREFIX, ScorerConfig, None), (REWARD_ENV_PREFIX, RewardConfig, "reward")],
)
def test_a_variable_and_its_key_spell_the_same_word(monkeypatch, prefix, model, section):
    """``RMR1_<KEY>`` (scorer) and ``RMR1_REWARD__<KEY>`` / ``RMR1_REWARD__<SECTION>__<KEY>``
    set the key of that name, checked by loading: each scalar key, sections walked into, set
    through its variable to a value other than its default."""
    changed = {"float": "0.75", "int": "3", "bool": "true", "str": None}
    tried: list[tuple] = []
    for path, info in _scalar_keys(model):
        kind = getattr(info.annotation, "__name__", str(info.annotation))
        value = changed.get(kind)
        if value is None or path[-1] in ("win", "loss", "seed", "strategy"):
            continue  # a free string, or a key that must stay apart from another
        variable = prefix + "__".join(path).upper()
        monkeypatch.setenv(variable, value)
        settings = load_reward_settings(None)
        monkeypatch.delenv(variable)
        got: Any = settings.reward if section else settings.scorer
        for part in path:
            got = getattr(got, part)
        assert str(got).lower() == value or got == pytest.approx(float(value)), path
        tried.append(path)
    assert len(tried) >= 3
    if section:  # the reward: section's sections are walked into
        assert {"group", "service", "hard_pairs"} <= {path[0] for path in tried if len(path) > 1}


def _scalar_keys(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple]:
    """Every key of ``model`` as a path, nested models walked into."""
    keys = []
    for name, info in model.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            keys += _scalar_keys(info.annotation, (*prefix, name))
        else:
            keys.append(((*prefix, name), info))
    return keys


def test_every_rmr1_variable_in_the_code_is_a_key_or_listed():
    text = "\n".join(p.read_text() for p in sorted(ROOT.glob("rmr1_plugins/**/*.py")))
    text += "\n".join(p.read_text() for p in sorted(ROOT.glob("adapters/*/rmr1_*/*.py")))
    keys = {f for _, f in FIELDS}
    bad = []
    for variable in sorted(set(re.findall(r"\bRMR1_[A-Z_]+", text))):
        if variable in NOT_SETTINGS or variable in CONSTANTS:
            continue
        path = variable[len(ENV_PREFIX) :].lower().split("__")
        if path[0] == "reward":
            path = path[1:]
        if not all(part in keys for part in path):
            bad.append(variable)
    assert bad == []


def _verl_adapter_keys() -> list[str]:
    """veRL's ``+reward.rmr1.<key>`` keys beyond the reward: section (read without veRL)."""
    tree = ast.parse((ROOT / "adapters/verl/rmr1_verl/reward.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "ADAPTER_KEYS":
            return [ast.literal_eval(e) for e in node.value.elts]  # type: ignore[attr-defined]
    raise AssertionError("ADAPTER_KEYS not found in rmr1_verl/reward.py")
