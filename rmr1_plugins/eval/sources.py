"""Raw rows from where benchmarks are published: JSON/JSONL files, folders of them, or datasets.

Every row comes with a ``source`` string saying where it was (``file.jsonl:12`` for a JSONL line,
``file.json[3]`` for an element of a JSON array, ``name[split][3]`` for a ``datasets`` row), so a
bad row can be reported by place even when it has no id.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rmr1_plugins._imports import require
from rmr1_plugins.jsonl import InputError

JSON_SUFFIXES = (".json", ".jsonl")
# Local files that ``datasets`` reads with one of its packaged builders.
BUILDER_SUFFIXES = {".parquet": "parquet", ".arrow": "arrow", ".csv": "csv"}


class SourceError(InputError):
    """A whole file, folder or dataset that cannot be read (no line to point at)."""

    def __init__(self, source: str, message: str) -> None:
        ValueError.__init__(self, f"{source}: {message}")
        self.source, self.line = source, 0


@dataclass(frozen=True)
class Row:
    """One raw benchmark row. ``value`` is whatever the file held (normally a dict)."""

    source: str
    value: Any
    file: str | None = None  # the local file it came from, if any (names can carry metadata)
    error: str | None = None  # set when the row itself could not be read (a broken JSONL line)


def read_rows(data: str, split: str | None = None) -> Iterator[Row]:
    """Rows of a local file or folder, or of a ``datasets`` name (``split`` picks the split)."""
    path = Path(data)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in JSON_SUFFIXES)
        if not files:
            raise SourceError(data, "folder holds no .json or .jsonl files")
        for file in files:
            yield from _read_json_file(file)
    elif path.is_file() and path.suffix in BUILDER_SUFFIXES:
        yield from _read_dataset(BUILDER_SUFFIXES[path.suffix], split or "train", str(path))
    elif path.is_file():
        yield from _read_json_file(path)
    elif path.suffix in JSON_SUFFIXES or path.suffix in BUILDER_SUFFIXES:
        raise SourceError(data, "no such file")
    else:
        if split is None:
            raise SourceError(data, "not a local file; give --split to load it with datasets")
        yield from _read_dataset(data, split)


def _read_json_file(path: Path) -> Iterator[Row]:
    """A JSON array (RM-Bench, RMB) or JSON Lines (JudgeBench), whatever the suffix says."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SourceError(str(path), f"cannot read file ({error})") from None
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as error:
            raise InputError(str(path), error.lineno, f"not valid JSON ({error.msg})") from None
        for index, value in enumerate(rows):
            yield Row(f"{path}[{index}]", value, str(path))
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        source = f"{path}:{number}"
        try:
            yield Row(source, json.loads(line), str(path))
        except json.JSONDecodeError as error:
            yield Row(source, None, str(path), error=f"not valid JSON ({error.msg})")


def _read_dataset(name: str, split: str, data_files: str | None = None) -> Iterator[Row]:
    datasets = require("datasets", "eval")
    try:
        if data_files is None:
            dataset = datasets.load_dataset(name, split=split)
        else:
            dataset = datasets.load_dataset(name, data_files=data_files, split=split)
    except Exception as error:  # datasets raises many types (hub, file, split errors)
        where = data_files or name
        raise SourceError(where, f"datasets could not load it ({error})") from None
    label = data_files or name
    for index, value in enumerate(dataset):
        yield Row(f"{label}[{split}][{index}]", value, data_files)
