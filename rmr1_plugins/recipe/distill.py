"""Stage 1 data: distil reasoning traces from a teacher and keep the ones with the right verdict.

Pass 1 sends each row's ``context_messages`` to the teacher. A trace is correct when the label's
``[[X]]`` is in its last 100 characters (RM-R1's rule). Wrong traces get pass 2: the user message
is extended with RM-R1's correction suffix and ``"The previous (wrong) judgement was: {previous}"``.
The SFT row pairs the *original* prompt with the correct trace, in the conversational
prompt/completion format (``{"prompt": [...], "completion": [{"role": "assistant", ...}]}``).
RM-R1 used two teachers (Claude-3.7-Sonnet for pass 1, o3 for pass 2): ``correction`` gives pass
2 its own backend and sampling; without it the pass-1 teacher does both.

Every generation is appended to ``traces.jsonl`` as soon as its batch finishes, so an interrupted
run restarts where it stopped: rows already answered are skipped.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rmr1_plugins.backends.base import Backend, SamplingParams
from rmr1_plugins.jsonl import InputError, write_row
from rmr1_plugins.recipe.sources import read_jsonl, write_jsonl
from rmr1_plugins.schema import normalize_label
from rmr1_plugins.templates import ChatMessages, second_pass_suffixes

CORRECT_TAIL_CHARS = 100
PREVIOUS_PREFIX = "The previous (wrong) judgement was: "


@dataclass
class DistillStats:
    rows: int = 0
    resumed: int = 0
    first_pass_correct: int = 0
    second_pass_tried: int = 0
    second_pass_correct: int = 0
    sft_rows: int = 0
    files: dict[str, str] = field(default_factory=dict)


def is_correct(trace: str, winner: object) -> bool:
    """RM-R1's distillation check: the label's ``[[X]]`` is in the last 100 characters."""
    return f"[[{normalize_label(winner)}]]" in trace[-CORRECT_TAIL_CHARS:]


def second_pass_messages(messages: ChatMessages, winner: object, previous: str) -> ChatMessages:
    """The pass-2 prompt: the last user message plus the suffix naming the correct verdict."""
    suffix = second_pass_suffixes()[normalize_label(winner)] + PREVIOUS_PREFIX + previous
    out = [dict(m) for m in messages]
    out[-1]["content"] = out[-1]["content"] + suffix
    return out


def row_key(row: dict[str, Any]) -> str:
    """The row's id, or a digest of its prompt when it has none."""
    if row.get("id") is not None:
        return str(row["id"])
    return hashlib.sha256(json.dumps(row["context_messages"]).encode()).hexdigest()[:16]


def load_rows(path: Path) -> list[dict[str, Any]]:
    """RM-R1 rows (``context_messages``, ``winner``), each checked."""
    rows = read_jsonl(path)
    for number, row in enumerate(rows, start=1):
        messages = row.get("context_messages")
        if not isinstance(messages, list) or not messages or messages[-1].get("role") != "user":
            raise InputError(
                str(path), number, "field 'context_messages': must end with a user turn"
            )
        try:
            normalize_label(row.get("winner"))
        except ValueError as error:
            raise InputError(str(path), number, f"field 'winner': {error}") from None
    return rows


def load_traces(path: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """Finished generations by ``(row key, pass)``.

    A line torn by a killed run is dropped, and the file is rewritten without it so that new
    records start on a line of their own.
    """
    done: dict[tuple[str, int], dict[str, Any]] = {}
    if not path.exists():
        return done
    torn = False
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            torn = True
            continue
        done[(record["id"], record["pass"])] = record
    if torn:
        write_jsonl(path, done.values())
    return done


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def distill(
    rows_path: Path,
    out_dir: Path,
    teacher: Backend,
    sampling: SamplingParams,
    *,
    batch_size: int = 32,
    second_pass: bool = True,
    correction: tuple[Backend, SamplingParams] | None = None,
) -> DistillStats:
    """Run both passes (skipping finished rows); write ``sft.jsonl`` and ``distill_stats.json``.

    ``correction`` is the pass-2 teacher and its sampling (default: ``teacher``, ``sampling``).
    """
    from tqdm import tqdm

    rows = load_rows(rows_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    traces_path = out_dir / "traces.jsonl"
    done = load_traces(traces_path)
    stats = DistillStats(rows=len(rows), resumed=len({key for key, _ in done}))
    teachers = {1: (teacher, SamplingParams(**{**asdict(sampling), "num_samples": 1}))}
    second, second_sampling = correction or (teacher, sampling)
    teachers[2] = (second, SamplingParams(**{**asdict(second_sampling), "num_samples": 1}))
    with open(traces_path, "a", encoding="utf-8") as sink:
        for pass_number in (1, 2) if second_pass else (1,):
            todo = [r for r in rows if (row_key(r), pass_number) not in done]
            if pass_number == 2:
                todo = [r for r in todo if not done[(row_key(r), 1)]["correct"]]
            bar = tqdm(total=len(todo), desc=f"pass {pass_number}", disable=not sys.stderr.isatty())
            for batch in _batches(todo, batch_size):
                prompts = [
                    r["context_messages"]
                    if pass_number == 1
                    else second_pass_messages(
                        r["context_messages"], r["winner"], done[(row_key(r), 1)]["completion"]
                    )
                    for r in batch
                ]
                backend, params = teachers[pass_number]
                outputs = backend.generate(prompts, params)
                for row, samples in zip(batch, outputs, strict=True):
                    record: dict[str, Any] = {
                        "id": row_key(row),
                        "pass": pass_number,
                        "completion": samples[0].text,
                        "finish_reason": samples[0].finish_reason,
                        "correct": is_correct(samples[0].text, row["winner"]),
                    }
                    write_row(sink, record)
                    done[(record["id"], pass_number)] = record
                bar.update(len(batch))
            bar.close()
    sft_rows = []
    for row in rows:
        one, two = done.get((row_key(row), 1)), done.get((row_key(row), 2))
        stats.first_pass_correct += bool(one and one["correct"])
        stats.second_pass_tried += two is not None
        stats.second_pass_correct += bool(two and two["correct"])
        kept = one if one and one["correct"] else two if two and two["correct"] else None
        if kept is not None:
            sft_rows.append(
                {
                    "id": row_key(row),
                    "prompt": row["context_messages"],
                    "completion": [{"role": "assistant", "content": kept["completion"]}],
                }
            )
    stats.sft_rows = write_jsonl(out_dir / "sft.jsonl", sft_rows)
    stats.files = {"traces": str(traces_path), "sft": str(out_dir / "sft.jsonl")}
    (out_dir / "distill_stats.json").write_text(json.dumps(asdict(stats), indent=2) + "\n")
    return stats
