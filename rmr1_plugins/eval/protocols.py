"""Evaluation protocols: parser, on_unparsed rule, A/B order and token budget per benchmark.

``rm-r1`` is RM-R1's evaluation (``eval/eval_one_command.sh`` and the ``run_generative.py``
scripts it calls, RM-R1-UIUC/RM-R1 d4c2542): vLLM greedy decoding (temperature 0, top_p 1),
``max_tokens`` 50000, one random A/B swap per comparison, "both or neither of ``[[A]]``/``[[B]]``
is an error" (``rmr1-eval``) and an error scores 0. RM-R1 did not evaluate JudgeBench; there its
rule is applied to JudgeBench's single game (``--single_game`` in JudgeBench's ``run_judge.py``:
the pair in its original order only, ``order=given``). RM-R1 predates RewardBench 2; there its
rule is applied with one random order per comparison, as on RewardBench. On RM-Bench it also
fills the 3×3 style matrix as RM-R1's ``process_final_result.py`` did (pairing ``rm-r1``: three
cells repeat others, see :func:`rmr1_plugins.eval.metrics.rm_r1_pairing`), which is where RM-R1's
published RM-Bench numbers come from.

``benchmark`` is each benchmark's authors' protocol: their on_unparsed rule (see
:data:`rmr1_plugins.eval.metrics.BENCHMARK_UNPARSED`) and order (JudgeBench: both orders, its
default; the others: one random order). Their parsers are written for their own judge prompts,
so the parser and the token budget are left to the scorer config (default ``strict``, 4,096).
RM-Bench's matrix holds each of the nine judged pairings in its own cell (pairing ``benchmark``).

Explicit settings win over the protocol's values: a flag, and a key that a ``--config`` file or
an ``RMR1_*`` variable sets (:func:`configured`); the protocol fills only what none of them set.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from rmr1_plugins.scorer_config import ScorerConfig

PROTOCOL_NAMES = ("benchmark", "rm-r1")
DEFAULT_PROTOCOL = "benchmark"


@dataclass(frozen=True)
class Protocol:
    parser: str | None
    on_unparsed: str
    order: str
    max_new_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    pairing: str | None = None  # RM-Bench only (metrics.PAIRINGS)


def _rmr1(order: str = "random", pairing: str | None = None) -> Protocol:
    return Protocol("rmr1-eval", "wrong", order, 50000, temperature=0.0, top_p=1.0, pairing=pairing)


PROTOCOLS: dict[str, dict[str, Protocol]] = {
    "rm-r1": {
        "rewardbench": _rmr1(),
        "rm-bench": _rmr1(pairing="rm-r1"),  # as RM-R1's published numbers, see metrics
        "rmb": _rmr1(),
        "judgebench": _rmr1("given"),
        "rewardbench2": _rmr1(),
    },
    "benchmark": {
        "rewardbench": Protocol(None, "benchmark", "random"),
        "rm-bench": Protocol(None, "benchmark", "random", pairing="benchmark"),
        "rmb": Protocol(None, "benchmark", "random"),
        "judgebench": Protocol(None, "benchmark", "both"),
        "rewardbench2": Protocol(None, "benchmark", "random"),
    },
}

# What rescoring recorded judgments can still change; the rest was fixed when they were made.
RESCORING = ("parser", "on_unparsed", "pairing")
SAMPLING = ("max_new_tokens", "temperature", "top_p")


def configured(config: ScorerConfig) -> dict[str, Any]:
    """The protocol's keys that ``config`` sets explicitly (a file or ``RMR1_*`` variable), not
    by default."""
    found: dict[str, Any] = {
        key: getattr(config, key) for key in ("parser", "order") if key in config.model_fields_set
    }
    if "sampling" in config.model_fields_set:
        sampling = config.sampling
        found |= {
            key: getattr(sampling, key) for key in SAMPLING if key in sampling.model_fields_set
        }
    return found


def apply(
    args: argparse.Namespace, rescoring: bool = False, config: Mapping[str, Any] | None = None
) -> dict:
    """Fill the settings left unset from ``args.protocol`` for ``args.benchmark``.

    A flag (an ``args`` value other than ``None``) wins, then ``config`` (what a config file or
    variable set, :func:`configured`), then the protocol; ``args`` gets the value that wins.
    When ``rescoring`` without an explicit ``--protocol``, the recorded parse is kept (only the
    on_unparsed rule is filled in). Returns what the report states: the protocol's name, its
    settings, and which of them an explicit setting overrode.
    """
    name = args.protocol or DEFAULT_PROTOCOL
    settings = asdict(PROTOCOLS[name][args.benchmark])
    if settings["pairing"] is None:  # only RM-Bench has one
        del settings["pairing"]
        args.pairing = None
    if rescoring:
        settings = {key: settings[key] for key in RESCORING if key in settings}
        if args.protocol is None:
            settings["parser"] = None
    config = config or {}
    overridden = []
    for key, value in settings.items():
        given = getattr(args, key, None)
        if given is None:
            given = config.get(key)
        if given is None:
            setattr(args, key, value)
            continue
        setattr(args, key, given)
        if value is not None and given != value:
            overridden.append(key)
    return {
        "name": name,
        "benchmark": args.benchmark,
        "settings": settings,
        "overridden": overridden,
    }


def rm_r1_backend_options(config: ScorerConfig) -> ScorerConfig:
    """Under ``rm-r1``, generate as RM-R1's eval did where the backend has the option and the
    options leave it unset: to the end of the sequence, not to the first ``</answer>``
    (``stop_at_answer: false``; RM-R1's rule reads the whole output), and with vllm the prompt
    string tokenized with the tokenizer's special tokens added (``add_special_tokens``)."""
    wanted = {"vllm": {"add_special_tokens": True, "stop_at_answer": False}}
    wanted["openai"] = {"stop_at_answer": False}
    options = config.backend.options
    add = {k: v for k, v in wanted.get(config.backend.name, {}).items() if k not in options}
    if add:
        config.backend.options = {**options, **add}
    return config


def add_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--protocol",
        choices=PROTOCOL_NAMES,
        help="rm-r1: RM-R1's parser (rmr1-eval), errors = 0, 50,000 tokens, greedy, one random "
        "order (JudgeBench: the given order), RM-Bench's matrix as RM-R1 filled it, no stop at "
        "</answer>, vllm prompts tokenized with special tokens added; benchmark (default): each "
        "benchmark's own on_unparsed rule and order. Flags and keys set by --config or RMR1_* "
        "variables win",
    )


def recorded_differences(protocol: dict, run: dict | None) -> list[str]:
    """Where recorded judgments were generated otherwise than the protocol says (rescoring can
    change the parser and the on_unparsed rule, not the order or the token budget)."""
    if not run:
        return []
    settings = asdict(PROTOCOLS[protocol["name"]][protocol["benchmark"]])
    recorded = {"order": run.get("order"), **(run.get("sampling") or {})}
    return [
        f"{key}={recorded.get(key)!r} (protocol: {settings[key]!r})"
        for key in ("order", "max_new_tokens", "temperature", "top_p")
        if settings[key] is not None
        and recorded.get(key) is not None
        and recorded.get(key) != settings[key]
    ]
