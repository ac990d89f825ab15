"""The built-in templates, parsers, backends, strategies and ``rmr1`` subcommands, registered
like any other plugin's.

Targets are ``"module:attr"`` strings, so this module imports nothing but the hook markers (and
the subcommands' modules only when the ``rmr1`` parser is built).
"""

from __future__ import annotations

import importlib

from rmr1_plugins.hookspecs import Register, Subparsers, hookimpl

SUBCOMMANDS = ("rmr1_plugins.eval.cli", "rmr1_plugins.serve.app", "rmr1_plugins.recipe.cli")


@hookimpl
def rmr1_register_templates(register: Register) -> None:
    register("rmr1-instruct", "rmr1_plugins.templates:InstructTemplate")
    register("rmr1-reasoning", "rmr1_plugins.templates:ReasoningTemplate")


@hookimpl
def rmr1_register_parsers(register: Register) -> None:
    register("strict", "rmr1_plugins.parsing:StrictParser")
    register("rmr1-eval", "rmr1_plugins.parsing:RMR1EvalParser")
    register("rmr1-train", "rmr1_plugins.parsing:RMR1TrainParser")


@hookimpl
def rmr1_register_backends(register: Register) -> None:
    register("constant", "rmr1_plugins.backends.constant:ConstantBackend")
    register("hf", "rmr1_plugins.backends.hf:HFBackend")
    register("vllm", "rmr1_plugins.backends.vllm:VLLMBackend")
    register("openai", "rmr1_plugins.backends.openai:OpenAIBackend")


@hookimpl
def rmr1_register_strategies(register: Register) -> None:
    strategies = "rmr1_plugins.rewards.strategies"
    register("reference", f"{strategies}:ReferenceStrategy")
    register("pivot", f"{strategies}:PivotStrategy")
    register("circular", f"{strategies}:CircularStrategy")
    register("round-robin", f"{strategies}:RoundRobinStrategy")
    register("bradley-terry", f"{strategies}:BradleyTerryStrategy")
    register("knockout", f"{strategies}:KnockoutStrategy")
    register("adaptive", "rmr1_plugins.rewards.adaptive:AdaptiveStrategy")


@hookimpl(tryfirst=True)  # listed before plugins' subcommands in ``rmr1 --help``
def rmr1_add_subcommands(subparsers: Subparsers) -> None:
    for module in SUBCOMMANDS:
        importlib.import_module(module).add_subcommand(subparsers)
