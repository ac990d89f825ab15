"""The judgments file: one JSON line per judged comparison, appended as results arrive.

A record holds everything the metrics need (label, verdicts, the loader's ``meta``), the raw
completions, and ``run``: the settings that produced it (:func:`run_settings`). Reopening a file
resumes it: comparisons already recorded are skipped, and a record made with other settings is
refused rather than mixed in. A last line cut off by an interrupted write is dropped, with a
warning, by cutting the file at the end of its last complete line (never by rewriting it). A run
holds an exclusive lock on the file, so a second run on the same file is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rmr1_plugins.config import ConfigError, error_lines
from rmr1_plugins.eval.loaders import Comparison
from rmr1_plugins.eval.sources import SourceError
from rmr1_plugins.jsonl import InputError
from rmr1_plugins.parsing import VerdictParser
from rmr1_plugins.schema import Judgment, PairResult, PairwiseExample
from rmr1_plugins.scorer import combine
from rmr1_plugins.scorer_config import ScorerConfig

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock, so no lock
    fcntl = None  # type: ignore[assignment]

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
# Backend options that change only where, how fast or how reliably the same request is answered,
# never what is asked or how the answer is decoded; they are left out of ``run``. Every other
# option counts, and so does every option of a backend not listed here.
SERVING_OPTIONS = {
    "openai": {
        "base_url",
        "api_key_env",
        "headers",
        "max_concurrency",
        "timeout_s",
        "connect_timeout_s",
        "max_retries",
        "retry_backoff_s",
        "max_retry_backoff_s",
        "sort_prompts",
        "group_affinity",
    },
    "vllm": {
        "tensor_parallel_size",
        "data_parallel_size",
        "gpu_memory_utilization",
        "enable_prefix_caching",
        "enforce_eager",
        "sort_prompts",
        "in_process",
        "use_tqdm",
    },
    "hf": {"device", "batch_size"},
}
# What a ``run`` key missing from an older record stands for: the setting's default.
RUN_DEFAULTS: dict[str, Any] = {"neutralize_markup": False, "backend_options": {}}


def run_settings(config: ScorerConfig) -> dict[str, Any]:
    """Every setting that can change a judgment, as JSON values.

    That is the backend and model, the backend options outside :data:`SERVING_OPTIONS` (only
    those that differ from the backend's defaults), prompt template, markup guard, parser,
    order, seed and sampling. Left out: ``cache_size`` and ``cache_sampled`` (whether an identical
    request is answered again) and the serving options. Raises :class:`ConfigError` for an
    invalid backend option.
    """
    run = {
        "backend": config.backend.name,
        "model": config.backend.model,
        "backend_options": _judging_options(config.backend.name, config.backend.options),
        "template": config.template,
        "neutralize_markup": config.neutralize_markup,
        "parser": config.parser,
        "order": config.order,
        "seed": config.seed,
        "sampling": config.sampling.model_dump(mode="json"),
    }
    return json.loads(json.dumps(run, default=str))  # as it reads back from the file


def _judging_options(backend: str, options: dict[str, Any]) -> dict[str, Any]:
    from rmr1_plugins.plugins import get_backend_class

    schema = getattr(get_backend_class(backend), "Options", None)
    given = dict(options)
    if schema is not None:
        try:
            given = schema.model_validate(given).model_dump(mode="json", exclude_defaults=True)
        except ValidationError as error:
            lines = error_lines(error, prefix="backend.options.")
            raise ConfigError("\n".join(["invalid configuration:", *lines])) from None
    serving = SERVING_OPTIONS.get(backend, set())
    return {key: value for key, value in sorted(given.items()) if key not in serving}


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
                # only where set: a normal judgment's record stays as it was
                **({"prob_invalid": True} if j.prob_invalid else {}),
            }
            for j in result.judgments
        ],
        "run": run,
    }


def read_records(path: str | Path) -> dict[str, dict[str, Any]]:
    """Records by comparison id (a later line for the same id wins); the file is not changed.

    Raises :class:`InputError` naming the line for a broken line, except a broken *last* line
    without a newline (an interrupted write): that one is skipped with a warning.
    """
    try:
        with open(path, "rb") as handle:
            return _parse(handle, Path(path))[0]
    except OSError as error:
        raise SourceError(str(path), f"cannot read judgments ({error})") from None


def _parse(lines: Iterable[bytes], path: Path) -> tuple[dict[str, dict[str, Any]], int | None]:
    """The records, and the byte offset where an unfinished last line starts (None if none).

    Lines are split on the byte ``\\n`` and decoded one by one, so a write cut inside a
    multi-byte character spoils only its own line.
    """
    records: dict[str, dict[str, Any]] = {}
    offset, number = 0, 0
    for raw in lines:
        number += 1
        start, offset = offset, offset + len(raw)
        unfinished = not raw.endswith(b"\n")  # only the last line can lack one
        try:
            line = raw.decode("utf-8")
            if not line.strip():
                if unfinished:
                    return records, start
                continue
            record = json.loads(line)
            if not isinstance(record, dict) or not record.keys() >= RECORD_KEYS:
                raise ValueError(f"not a judgment record (needs {', '.join(sorted(RECORD_KEYS))})")
            if not isinstance(record["meta"], dict):
                raise ValueError("field 'meta' must be an object")
        except (ValueError, RecursionError) as error:  # UnicodeDecodeError, JSONDecodeError too
            if isinstance(error, RecursionError):
                error = ValueError("nested too deeply")
            if unfinished:  # no newline after it: cut off mid-write
                warning = f"warning: {path}, line {number}: skipped an unfinished line"
                print(warning, file=sys.stderr)
                return records, start
            if isinstance(error, UnicodeDecodeError):
                error = ValueError(f"not valid UTF-8 ({error.reason} at byte {error.start})")
            elif isinstance(error, json.JSONDecodeError):
                error = ValueError(f"not valid JSON ({error.msg} at column {error.colno})")
            raise InputError(str(path), number, str(error)) from None
        records[str(record["id"])] = record
    return records, None


def missing_meta(record: dict[str, Any], benchmark: str) -> list[str]:
    """The ``meta`` keys that ``benchmark``'s metric needs and ``record`` lacks."""
    needed = META_KEYS[benchmark] | ({"losers"} if record["meta"].get("set") == "bon" else set())
    return sorted(needed - record["meta"].keys())


class JudgmentFile:
    """Append-only judgments of one benchmark and one run; ``records`` holds what is judged.

    Opening takes an exclusive ``flock`` on the file (created if missing) and keeps it until
    :meth:`close` (or until the object is collected or the process ends, even by a kill); a
    second open of the same file, from this process or another, raises :class:`ConfigError`.
    Use it as a context manager.
    """

    def __init__(self, path: str | Path, run: dict[str, Any], benchmark: str) -> None:
        self._handle: io.FileIO | None = None
        self.path = Path(path)
        self.run = run
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Unbuffered: a failed write leaves no bytes behind in a buffer to be flushed later.
            self._handle = open(self.path, "a+b", buffering=0)  # noqa: SIM115 - kept until close
        except OSError as error:
            raise SourceError(str(self.path), f"cannot open judgments ({error})") from None
        try:
            self._lock()
            with open(self.path, "rb") as reader:
                self.records, unfinished = _parse(reader, self.path)
                ended = reader.seek(0, os.SEEK_END) == 0 or _last_byte(reader) == b"\n"
            self._check(benchmark)
            if unfinished is not None:
                self._handle.truncate(unfinished)  # in place: complete lines are never rewritten
            elif not ended:
                self._write(b"\n")  # a complete last record without its newline
        except BaseException:
            self.close()
            raise

    def _lock(self) -> None:
        if fcntl is None:  # pragma: no cover
            return
        assert self._handle is not None  # opened just before
        try:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"{self.path} is in use by another rmr1 eval run (it holds the file's lock); "
                "wait for that run to end, or pass another --judgments file"
            ) from None
        except OSError as error:  # a file system without locks
            raise SourceError(str(self.path), f"cannot lock judgments ({error})") from None

    def _check(self, benchmark: str) -> None:
        unrecorded = sorted(
            key
            for key in RUN_DEFAULTS.keys() & self.run.keys()
            if any(key not in _run_of(record) for record in self.records.values())
        )
        if unrecorded:  # written by an older version
            taken = ", ".join(f"{key}={RUN_DEFAULTS[key]!r}" for key in unrecorded)
            warning = f"warning: {self.path} does not record {taken}; taken as defaults"
            print(warning, file=sys.stderr)
        for record in self.records.values():
            if record.get("benchmark") != benchmark:
                raise ConfigError(
                    f"{self.path} holds judgments for {record.get('benchmark')!r}, not "
                    f"{benchmark!r}; pass another --judgments file"
                )
            _check_same_run(self.path, record, self.run)

    def append(self, record: dict[str, Any]) -> None:
        """Write one record as one line; a failed write leaves the file as it was."""
        try:
            data = json.dumps(record, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: keep it as a \u escape
            data = json.dumps(record).encode("ascii")
        self._write(data + b"\n")
        self.records[record["id"]] = record

    def _write(self, data: bytes) -> None:
        if self._handle is None:
            raise ValueError(f"{self.path} is closed")
        end = os.fstat(self._handle.fileno()).st_size
        try:
            view = memoryview(data)
            while view:  # O_APPEND: every write lands at the end
                view = view[self._handle.write(view) :]
        except BaseException:
            with contextlib.suppress(OSError):
                self._handle.truncate(end)
            raise

    def close(self) -> None:
        """Release the lock and the file (closing the file releases its ``flock``)."""
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.close()

    def __enter__(self) -> JudgmentFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def _last_byte(reader: io.BufferedReader) -> bytes:
    reader.seek(-1, os.SEEK_END)
    return reader.read(1)


def _run_of(record: dict[str, Any]) -> dict[str, Any]:
    run = record.get("run")
    return run if isinstance(run, dict) else {}


def _check_same_run(path: Path, record: dict[str, Any], run: dict[str, Any]) -> None:
    """Refuse ``record`` unless it was made with ``run``, naming every key that differs."""
    before = _run_of(record)
    differences = []
    for key, value in run.items():
        old = before.get(key, RUN_DEFAULTS.get(key))
        if old == value:
            continue
        if isinstance(old, dict) and isinstance(value, dict):  # only the keys that differ
            keys = sorted(k for k in old.keys() | value.keys() if old.get(k) != value.get(k))
            old = {k: old[k] for k in keys if k in old}
            value = {k: value[k] for k in keys if k in value}
        differences.append(f"{key}={old!r}, not {value!r}")
    if differences:
        raise ConfigError(
            f"{path} holds judgments made with {'; '.join(differences)}; "
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
