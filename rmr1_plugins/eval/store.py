"""The judgments file: one JSON line per judged comparison, appended as results arrive.

A record holds everything the metrics need (label, verdicts, the loader's ``meta``), the raw
completions, and ``run``: the settings that produced it. Reopening a file resumes it: comparisons
already recorded are skipped, and a record made with other settings is refused rather than mixed
in. A last line cut off by an interrupted write is dropped, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from rmr1_plugins.config import ConfigError, ScorerConfig
from rmr1_plugins.eval.loaders import Comparison
from rmr1_plugins.eval.sources import SourceError
from rmr1_plugins.jsonl import InputError, write_row
from rmr1_plugins.parsing import VerdictParser
from rmr1_plugins.schema import Judgment, PairResult, PairwiseExample
from rmr1_plugins.scorer import combine

_FLIP = {"A": "B", "B": "A", None: None}
RECORD_KEYS = {"id", "item", "benchmark", "meta", "label", "verdict", "judgments"}
# What each benchmark's metric reads from ``meta`` (best-of-N RMB records also need "losers").
META_KEYS = {
    "rewardbench": {"subset"},
    "rm-bench": {"group", "chosen_style", "rejected_style"},
    "rmb": {"set", "goal", "category"},
    "judgebench": {"category"},
    "rewardbench2": {"subset"},  # plus what metrics.RB2_META names per kind of row
}


def run_settings(config: ScorerConfig) -> dict[str, Any]:
    """What decides a judgment: backend and model, prompt, parser, order, seed and sampling."""
    return {
        "backend": config.backend.name,
        "model": config.backend.model,
        "template": config.template,
        "parser": config.parser,
        "order": config.order,
        "seed": config.seed,
        "sampling": config.sampling.model_dump(),
    }


def content_key(comparison: Comparison) -> str:
    """A short hash of what was judged, so a changed benchmark row is judged again."""
    return hashlib.sha256(comparison.example.model_dump_json().encode()).hexdigest()[:16]


def is_current(record: dict[str, Any] | None, comparison: Comparison) -> bool:
    """Whether ``record`` judged this comparison as it is now (records without a key count)."""
    if record is None:
        return False
    return record.get("content", content_key(comparison)) == content_key(comparison)


def make_record(
    benchmark: str, comparison: Comparison, result: PairResult, run: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": comparison.id,
        "item": comparison.item,
        "benchmark": benchmark,
        "content": content_key(comparison),
        "meta": comparison.meta,
        "label": result.label,
        "verdict": result.verdict,
        "votes": result.votes,
        "orders_agree": result.orders_agree,
        "judgments": [
            {
                "verdict": j.verdict,
                "swapped": j.swapped,
                "finish_reason": j.finish_reason,
                "completion": j.completion,
            }
            for j in result.judgments
        ],
        "run": run,
    }


def read_records(path: str | Path, repair: bool = False) -> dict[str, dict[str, Any]]:
    """Records by comparison id (a later line for the same id wins).

    Raises :class:`InputError` naming the line for a broken line, except a broken *last* line
    without a newline (an interrupted write): that one is skipped, and with ``repair`` also cut
    from the file so that appending can go on.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SourceError(str(path), f"cannot read judgments ({error})") from None
    lines = text.split("\n")
    records: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not record.keys() >= RECORD_KEYS:
                raise ValueError(f"not a judgment record (needs {', '.join(sorted(RECORD_KEYS))})")
            if not isinstance(record["meta"], dict):
                raise ValueError("field 'meta' must be an object")
        except ValueError as error:
            if number == len(lines):  # no newline after it: cut off mid-write
                if repair:
                    path.write_text(text[: len(text) - len(line)], encoding="utf-8")
                print(
                    f"warning: {path}, line {number}: skipped an unfinished line", file=sys.stderr
                )
                break
            raise InputError(str(path), number, str(error)) from None
        records[str(record["id"])] = record
    return records


def missing_meta(record: dict[str, Any], benchmark: str) -> list[str]:
    """The ``meta`` keys that ``benchmark``'s metric needs and ``record`` lacks."""
    needed = META_KEYS[benchmark] | ({"losers"} if record["meta"].get("set") == "bon" else set())
    return sorted(needed - record["meta"].keys())


class JudgmentFile:
    """Append-only judgments of one benchmark and one run; ``records`` holds what is judged."""

    def __init__(self, path: str | Path, run: dict[str, Any], benchmark: str) -> None:
        self.path = Path(path)
        self.run = run
        self.records = read_records(self.path, repair=True) if self.path.exists() else {}
        for record in self.records.values():
            if record.get("benchmark") != benchmark:
                raise ConfigError(
                    f"{self.path} holds judgments for {record.get('benchmark')!r}, not "
                    f"{benchmark!r}; pass another --judgments file"
                )
            _check_same_run(self.path, record, run)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        ended = not self.path.exists() or self.path.read_bytes()[-1:] in (b"", b"\n")
        if not ended:
            with self.path.open("a", encoding="utf-8") as handle:  # a complete but unended line
                handle.write("\n")

    def append(self, record: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            write_row(handle, record)
        self.records[record["id"]] = record


def _check_same_run(path: Path, record: dict[str, Any], run: dict[str, Any]) -> None:
    before = record.get("run", {})
    for key, value in run.items():
        if before.get(key) != value:
            raise ConfigError(
                f"{path} holds judgments made with {key}={before.get(key)!r}, not {value!r}; "
                "pass the same settings to resume it, or another --judgments file"
            )


def reparse(record: dict[str, Any], parser: VerdictParser) -> dict[str, Any]:
    """The record with every stored completion parsed again and the verdicts combined again."""
    judgments = [
        Judgment(
            verdict=_FLIP[raw] if j["swapped"] else raw,
            completion=j["completion"],
            swapped=j["swapped"],
            finish_reason=j.get("finish_reason"),
        )
        for j in record["judgments"]
        for raw in [parser.parse(j["completion"])]
    ]
    # combine() only reads the example's id and label.
    placeholder = PairwiseExample(
        id=record["id"],
        context=[{"role": "user", "content": ""}],
        response_a="",
        response_b="",
        label=record["label"],
    )
    result = combine(placeholder, judgments)
    updated = dict(record)
    updated.update(verdict=result.verdict, votes=result.votes, orders_agree=result.orders_agree)
    updated["judgments"] = [
        {**old, "verdict": new.verdict}
        for old, new in zip(record["judgments"], judgments, strict=True)
    ]
    return updated
