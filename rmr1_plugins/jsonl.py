"""JSONL input and output with errors that name the line and the field."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

from pydantic import ValidationError

T = TypeVar("T")


class InputError(ValueError):
    """A bad input row: ``source`` and ``line`` say where, the message says what."""

    def __init__(self, source: str, line: int, message: str) -> None:
        super().__init__(f"{source}, line {line}: {message}")
        self.source, self.line = source, line


@contextmanager
def open_input(path: str | Path) -> Iterator[IO[str]]:
    """Open a file for reading as UTF-8, or stdin for ``-``."""
    if str(path) == "-":
        yield sys.stdin
        return
    with open(path, encoding="utf-8", newline="") as handle:
        yield handle


def read_rows(handle: IO[str], source: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each non-blank line; raises :class:`InputError`."""
    line_number = 0
    while True:
        try:
            line = handle.readline()
        except UnicodeDecodeError as error:
            raise InputError(source, line_number + 1, f"not valid UTF-8 ({error.reason})") from None
        if not line:
            return
        line_number += 1
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(source, line_number, f"not valid JSON ({error.msg})") from None
        if not isinstance(row, dict):
            raise InputError(
                source, line_number, f"expected a JSON object, got {type(row).__name__}"
            )
        yield line_number, row


def convert(row: dict[str, Any], build: Callable[[dict[str, Any]], T], source: str, line: int) -> T:
    """Build a model from a row, turning validation errors into an :class:`InputError`."""
    try:
        return build(row)
    except ValidationError as error:
        problems = []
        for problem in error.errors():
            field = ".".join(str(part) for part in problem["loc"]) or "row"
            message = problem["msg"]
            if problem["type"] == "extra_forbidden":
                message = "unknown field"
            problems.append(f"field '{field}': {message}")
        raise InputError(source, line, "; ".join(problems)) from None
    except (ValueError, TypeError, KeyError) as error:
        raise InputError(source, line, str(error)) from None


def write_row(handle: IO[str], row: Any) -> None:
    """Write one JSON line and flush, so an interrupted run keeps every finished row."""
    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    handle.flush()
