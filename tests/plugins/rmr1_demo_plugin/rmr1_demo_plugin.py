"""A demo third-party plugin: a parser that reads a verdict written as ``FINAL: A``."""

from __future__ import annotations

import re

from rmr1_plugins import hookimpl


class FinalLineParser:
    name = "final-line"

    def parse(self, completion: str) -> str | None:
        found = re.findall(r"FINAL: ([AB])\b", completion)
        return found[-1] if found else None


@hookimpl
def rmr1_register_parsers(register):
    register("final-line", "rmr1_demo_plugin:FinalLineParser")
