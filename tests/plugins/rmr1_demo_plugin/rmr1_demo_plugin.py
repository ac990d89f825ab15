"""A demo third-party plugin: a parser that reads a verdict written as ``FINAL: A``, and an
``rmr1 demo-tally`` subcommand that counts those verdicts in a JSONL file."""

from __future__ import annotations

import argparse
import json
import re

from rmr1_plugins import UsageError, get_parser, hookimpl


class FinalLineParser:
    name = "final-line"

    def parse(self, completion: str) -> str | None:
        found = re.findall(r"FINAL: ([AB])\b", completion)
        return found[-1] if found else None


@hookimpl
def rmr1_register_parsers(register):
    register("final-line", "rmr1_demo_plugin:FinalLineParser")


@hookimpl
def rmr1_add_subcommands(subparsers):
    tally = subparsers.add_parser(
        "demo-tally", help="count the FINAL: verdicts in a JSONL file of completions (demo plugin)"
    )
    tally.add_argument("file", help="JSONL of {completion}")
    tally.set_defaults(func=cmd_tally)


def cmd_tally(args: argparse.Namespace) -> int:
    parser = get_parser("final-line")
    counts = {"A": 0, "B": 0, "none": 0}
    with open(args.file, encoding="utf-8") as handle:
        for line, text in enumerate(handle, 1):
            try:
                row = json.loads(text)
            except ValueError:
                raise UsageError(f"{args.file}, line {line}: not JSON") from None
            completion = row.get("completion") if isinstance(row, dict) else None
            if not isinstance(completion, str):
                raise UsageError(f"{args.file}, line {line}: field 'completion' must be a string")
            counts[parser.parse(completion) or "none"] += 1
    print(json.dumps(counts))
    return 0
