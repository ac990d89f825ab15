"""Reading preference rows from local files or ``datasets.load_dataset`` names, and writing rows.

A source is a local ``.jsonl``/``.json``/``.parquet`` file, or anything else
``datasets.load_dataset`` accepts (a hub name such as ``Skywork/Skywork-Reward-Preference-80K-v0.2``
or a local dataset folder). Rows come with a ``where`` string (file and line, or dataset and
index) so errors can say which row is bad.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmr1_plugins._imports import require
from rmr1_plugins.config import ConfigError
from rmr1_plugins.jsonl import InputError, open_input, read_rows, write_row

LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")


@dataclass(frozen=True)
class SourceSpec:
    """One source of the mix: where, which split, and which of its rows.

    ``shuffle_seed`` permutes the whole source as ``datasets.Dataset.shuffle(seed=...)`` does
    (NumPy's ``default_rng(seed).permutation``), so the same rows come out as in RM-R1's
    ``mix_data.py``; ``size`` then keeps the first ``size`` rows. ``exclude`` drops rows whose
    field equals the value (after the size is taken, as RM-R1 filtered while iterating).
    """

    path: str
    split: str | None = None
    subset: str | None = None
    shuffle_seed: int | None = None
    size: int | None = None
    exclude: dict[str, str] = field(default_factory=dict)


def source_name(source: str) -> str:
    """A short name for ids: the file's stem, or the dataset name's last part."""
    path = Path(source)
    return path.stem if path.suffix in LOCAL_SUFFIXES else path.name or source


def iter_rows(
    source: str, split: str = "train", subset: str | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(row number, row)``; row numbers are file lines for JSONL, else 1-based indexes."""
    path = Path(source)
    if path.is_file() and path.suffix == ".jsonl":
        with open_input(path) as handle:
            yield from read_rows(handle, source)
    elif path.is_file() and path.suffix == ".json":
        yield from enumerate(_json_rows(path), start=1)
    elif path.is_file() and path.suffix == ".parquet":
        table = require("pyarrow.parquet", "recipe").read_table(path)
        yield from enumerate(table.to_pylist(), start=1)
    elif path.is_file():
        raise ConfigError(f"{source}: unknown file type {path.suffix!r}; use {LOCAL_SUFFIXES}")
    elif path.suffix in LOCAL_SUFFIXES:
        raise ConfigError(f"{source}: no such file")
    else:
        datasets = require("datasets", "recipe")
        try:
            dataset = datasets.load_dataset(source, subset, split=split)
        except Exception as error:  # datasets raises many types; say which source failed
            raise ConfigError(f"{source}: datasets.load_dataset failed: {error}") from None
        yield from enumerate(dataset, start=1)


def _json_rows(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InputError(str(path), error.lineno, f"not valid JSON ({error.msg})") from None
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise InputError(str(path), 1, "a .json source must hold a list of objects")
    return data


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows as JSON lines (replacing the file); returns how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            write_row(handle, row)
            count += 1
    return count


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every row of a JSONL file; a bad line raises :class:`InputError` naming it."""
    with open_input(path) as handle:
        return [row for _, row in read_rows(handle, str(path))]


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write rows as a Parquet file (needs ``pyarrow``)."""
    pyarrow = require("pyarrow", "recipe")
    parquet = require("pyarrow.parquet", "recipe")
    path.parent.mkdir(parents=True, exist_ok=True)
    parquet.write_table(pyarrow.Table.from_pylist(rows), path)
