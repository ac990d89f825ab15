"""Evaluation protocols: parser, no-verdict rule, A/B order and token budget per benchmark.

``rm-r1`` is RM-R1's evaluation (``eval/eval_one_command.sh`` and the ``run_generative.py``
scripts it calls, RM-R1-UIUC/RM-R1 d4c2542): vLLM greedy decoding (temperature 0, top_p 1),
``max_tokens`` 50000, one random A/B swap per comparison, "both or neither of ``[[A]]``/``[[B]]``
is an error" (``rmr1-eval``) and an error scores 0. RM-R1 did not evaluate JudgeBench; there its
rule is applied to JudgeBench's single game (``--single_game`` in JudgeBench's ``run_judge.py``:
the pair in its original order only, ``order=given``). RM-R1 predates RewardBench 2; there its
rule is applied with one random order per comparison, as on RewardBench.

``benchmark`` is each benchmark's authors' protocol: their no-verdict rule (see
:data:`rmr1_plugins.eval.metrics.BENCHMARK_NO_VERDICT`) and order (JudgeBench: both orders, its
default; the others: one random order). Their parsers are written for their own judge prompts,
so the parser and the token budget are left to the scorer config (default ``strict``, 4,096).

Flags given explicitly win over the protocol's values.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass

PROTOCOL_NAMES = ("benchmark", "rm-r1")
DEFAULT_PROTOCOL = "benchmark"


@dataclass(frozen=True)
class Protocol:
    parser: str | None
    no_verdict: str
    order: str
    max_new_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None


def _rmr1(order: str = "random") -> Protocol:
    return Protocol("rmr1-eval", "wrong", order, max_new_tokens=50000, temperature=0.0, top_p=1.0)


PROTOCOLS: dict[str, dict[str, Protocol]] = {
    "rm-r1": {
        "rewardbench": _rmr1(),
        "rm-bench": _rmr1(),
        "rmb": _rmr1(),
        "judgebench": _rmr1("given"),
        "rewardbench2": _rmr1(),
    },
    "benchmark": {
        "rewardbench": Protocol(None, "benchmark", "random"),
        "rm-bench": Protocol(None, "benchmark", "random"),
        "rmb": Protocol(None, "benchmark", "random"),
        "judgebench": Protocol(None, "benchmark", "both"),
        "rewardbench2": Protocol(None, "benchmark", "random"),
    },
}

# What rescoring recorded judgments can still change; the rest was fixed when they were made.
RESCORING = ("parser", "no_verdict")


def apply(args: argparse.Namespace, rescoring: bool = False) -> dict:
    """Fill the flags left unset (``None``) from ``args.protocol`` for ``args.benchmark``.

    When ``rescoring`` without an explicit ``--protocol``, the recorded parse is kept (only the
    no-verdict rule is filled in). Returns what the report states: the protocol's name, its
    settings, and which of them an explicit flag overrode.
    """
    name = args.protocol or DEFAULT_PROTOCOL
    settings = asdict(PROTOCOLS[name][args.benchmark])
    if rescoring:
        settings = {key: settings[key] for key in RESCORING}
        if args.protocol is None:
            settings["parser"] = None
    overridden = []
    for key, value in settings.items():
        given = getattr(args, key, None)
        if given is None:
            setattr(args, key, value)
        elif value is not None and given != value:
            overridden.append(key)
    return {
        "name": name,
        "benchmark": args.benchmark,
        "settings": settings,
        "overridden": overridden,
    }


def add_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--protocol",
        choices=PROTOCOL_NAMES,
        help="rm-r1: RM-R1's parser (rmr1-eval), errors = 0, 50,000 tokens, greedy, one random "
        "order (JudgeBench: the given order); benchmark (default): each benchmark's own "
        "no-verdict rule and order. Explicit flags win",
    )


def recorded_differences(protocol: dict, run: dict | None) -> list[str]:
    """Where recorded judgments were generated otherwise than the protocol says (rescoring can
    change the parser and the no-verdict rule, not the order or the token budget)."""
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
