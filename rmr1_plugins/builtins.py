"""The built-in templates, parsers, backends and strategies, registered like any other plugin.

Targets are ``"module:attr"`` strings, so this module imports nothing but the hook markers.
"""

from __future__ import annotations

from rmr1_plugins.hookspecs import Register, hookimpl


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
