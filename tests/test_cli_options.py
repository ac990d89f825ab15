"""Every flag generated from a config field agrees with it: name, type, choices and default."""

from __future__ import annotations

import argparse
import dataclasses
import typing

import pytest

from rmr1_plugins.backends.base import SamplingParams
from rmr1_plugins.cli import SCORER_FLAGS, build_parser, main
from rmr1_plugins.cli_options import Flag, add_flags, generated, overrides, shown, value_type
from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.scorer_config import SamplingConfig, ScorerConfig
from rmr1_plugins.serve.app import REWARD_FLAGS, SERVER_FLAGS, ServeOptions

# Flags named otherwise than their field, each for a reason (a nested key's short name, or a
# section's key that keeps its section's word).
EXPLICIT_NAMES = {
    "backend": ("backend", "name"),
    "model": ("backend", "model"),
    "group-size": ("group", "size"),
    "group-timeout-s": ("group", "timeout_s"),
}


def every_flag():
    return generated(build_parser())


def test_flags_are_generated_for_every_command_that_builds_a_scorer():
    commands = {flag.option() for _, flag in every_flag()}
    assert {"--parser", "--num-samples", "--timeout-s", "--win", "--max-pending"} <= commands
    assert len(every_flag()) > 3 * len(SCORER_FLAGS)  # score, serve, eval, the recipe teachers


@pytest.mark.parametrize(("action", "flag"), every_flag(), ids=lambda v: getattr(v, "dest", ""))
def test_a_flag_agrees_with_its_field(action, flag):
    info = flag.info
    # name: the field's, dashed (after any prefix), unless listed above with its key
    option = action.option_strings[0]
    if flag.name is None:
        assert option.endswith("--" + flag.field.replace("_", "-")) or option.endswith(
            "-" + flag.field.replace("_", "-")
        )
        assert flag.path[-1] == flag.field
    else:
        assert EXPLICIT_NAMES[flag.name] == flag.path
    # type and choices: the field's annotation
    kind, choices = value_type(info)
    if kind is bool:
        assert isinstance(action, argparse.BooleanOptionalAction)
    else:
        assert action.type is kind
        assert tuple(action.choices or ()) == tuple(choices or ())
    # an unset flag leaves the config alone; the help shows the field's default
    assert action.default is None
    default = info.get_default(call_default_factory=True)
    assert (
        default is None
        or f"(default: {shown(default)})" in action.help
        or ("(default: " in action.help and "(default: None)" not in action.help)
    )


def test_help_shows_the_models_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    fields = RewardConfig.model_fields["service"].annotation.model_fields
    assert (
        f"per-sample deadline, queueing included (default: {fields['timeout_s'].default})" in text
    )
    assert f"(default: {ServeOptions.model_fields['max_pending'].default})" in text
    assert "--neutralize-markup, --no-neutralize-markup defuse" in text
    assert "(default: on, as in training)" in text


def test_each_option_default_matches_its_field_even_if_a_default_changes():
    class Model(ScorerConfig):
        parser: str = "rmr1-eval"
        order: typing.Literal["given", "both"] = "both"

    parser = argparse.ArgumentParser()
    add_flags(parser, [Flag(Model, "parser", ("parser",)), Flag(Model, "order", ("order",))])
    order = next(a for a in parser._actions if a.dest == "order")
    assert order.choices == ("given", "both") and "(default: both)" in order.help
    assert "(default: rmr1-eval)" in next(a for a in parser._actions if a.dest == "parser").help
    assert overrides(
        parser.parse_args(["--order", "given"]),
        generated(parser) and [Flag(Model, "order", ("order",))],
    ) == {"order": "given"}


def test_reward_and_server_flags_cover_their_models():
    assert {f.field for f in SERVER_FLAGS} == set(ServeOptions.model_fields)
    for flag in REWARD_FLAGS:  # each sets the field it is generated from, at its path
        model = RewardConfig
        for section in flag.path[:-1]:
            model = model.model_fields[section].annotation
        assert flag.model is model and flag.path[-1] == flag.field in model.model_fields


def test_sampling_config_and_sampling_params_use_the_same_words_and_defaults():
    params = {f.name: f.default for f in dataclasses.fields(SamplingParams)}
    for name, info in SamplingConfig.model_fields.items():
        assert params[name] == info.default, name
    assert SamplingConfig(num_samples=3).params().num_samples == 3


def test_prepare_flags_default_to_prepare_config():
    from rmr1_plugins.recipe.prepare import PrepareConfig

    defaults = PrepareConfig()
    for command in (["recipe", "prepare", "-o", "x"], ["recipe", "run", "-o", "x"]):
        args = build_parser().parse_args(command)
        for key in ("split", "placement", "max_prompt_tokens", "seed"):
            assert getattr(args, key) == getattr(defaults, key), (command, key)
    assert build_parser().parse_args(["recipe", "prepare", "-o", "x"]).eval_size == 0
    assert build_parser().parse_args(["recipe", "run", "-o", "x"]).eval_size == 16  # its own


def test_teacher_flags_are_the_scorer_flags_with_a_prefix():
    pass_1 = ["--backend", "openai", "--top-p", "0.5"]
    pass_2 = ["--correction-teacher-model", "m2", "--correction-teacher-backend-option", "a=1"]
    args = build_parser().parse_args(
        ["recipe", "distill", "rows.jsonl", "-o", "x", *pass_1, *pass_2]
    )
    from rmr1_plugins.recipe.cli import _teacher_flags

    assert _teacher_flags(args, "") == {"backend": {"name": "openai"}, "sampling": {"top_p": 0.5}}
    assert _teacher_flags(args, "correction-teacher-") == {
        "backend": {"model": "m2", "options": {"a": 1}}
    }


FIELD_MODELS = (ScorerConfig, SamplingConfig, RewardConfig, ServeOptions)
# The same key in a context with its own values: rmr1 eval's on_unparsed is benchmark|wrong|tie
# (how a judge is graded), the reward's tie|loss|exclude (how a completion is rewarded).
OWN_VALUES = {"eval": {"on_unparsed"}}


@pytest.mark.parametrize("command", ["score", "serve", "eval"])
def test_no_flag_of_a_config_key_is_written_by_hand(command):
    """A flag whose name is a config key must be generated, so it cannot drift from it."""
    from rmr1_plugins.cli_options import FIELD_ATTRIBUTE

    fields = {name for model in FIELD_MODELS for name in model.model_fields}
    parser = build_parser()._subparsers._group_actions[0].choices[command]
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or not action.option_strings:
            continue  # a positional
        if action.dest in fields - OWN_VALUES.get(command, set()):
            assert hasattr(action, FIELD_ATTRIBUTE), action.option_strings
