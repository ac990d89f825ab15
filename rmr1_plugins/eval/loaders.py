"""One loader per benchmark: native rows → items, each a list of pairwise comparisons.

Every comparison puts the preferred response in slot A with ``label="A"`` (JudgeBench keeps its
own A/B order and label; a RewardBench 2 Ties pair of two correct answers has no label); the
scorer's ``order`` option randomises or doubles the order. A row
that cannot be used becomes a :class:`Malformed` entry with its id (or its place in the file);
nothing is dropped silently. Formats and where they are defined: ``docs/guides/eval.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rmr1_plugins.errors import UsageError
from rmr1_plugins.eval.sources import Row, SourceError, read_rows
from rmr1_plugins.schema import PairwiseExample

# Defaults for ``datasets`` names; local files need no split.
DEFAULT_SPLITS = {
    "rewardbench": "filtered",
    "rm-bench": "train",
    "rmb": "train",
    "judgebench": "gpt",
    "rewardbench2": "test",
}
BENCHMARKS = tuple(DEFAULT_SPLITS)
RM_BENCH_DOMAINS = ("chat", "math", "code", "safety")  # scored groups (safety-refuse/-response)
RM_BENCH_STYLES = 3  # concise, detailed plain text, detailed markdown
RB2_SUBSETS = ("Factuality", "Precise IF", "Math", "Safety", "Focus", "Ties")
RB2_TIES = "Ties"
RB2_TIE_TYPES = ("ref", "tied")  # Ties ids are "ref:N" (one correct answer) or "tied:N"
_ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}
_ROLES |= {"bot": "assistant", "chatbot": "assistant", "model": "assistant", "system": "system"}


class RowError(UsageError, ValueError):
    """A row that cannot be used; the message says which field and why."""


@dataclass(frozen=True)
class Comparison:
    """One pairwise judgment to make. ``id`` is stable across runs (it keys resumed runs)."""

    id: str
    item: str
    example: PairwiseExample
    meta: dict[str, Any]


@dataclass
class Item:
    """One benchmark row and the comparisons it expands to."""

    id: str
    source: str
    comparisons: list[Comparison]


@dataclass(frozen=True)
class Malformed:
    """A row left out of the metrics, and why. ``id`` is ``None`` when the row had none."""

    id: str | None
    source: str
    reason: str


@dataclass
class Loaded:
    benchmark: str
    data: list[str]
    rows: int = 0
    items: list[Item] = field(default_factory=list)
    malformed: list[Malformed] = field(default_factory=list)
    failed: list[Row] = field(default_factory=list, repr=False)  # the first rows that failed

    @property
    def comparisons(self) -> list[Comparison]:
        return [c for item in self.items for c in item.comparisons]


def load(benchmark: str, data: Iterable[str], split: str | None = None) -> Loaded:
    """Read every row of ``data`` (files, folders or ``datasets`` names) into items."""
    if benchmark not in LOADERS:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose from {', '.join(BENCHMARKS)}")
    data = list(data)
    loaded = Loaded(benchmark, data)
    seen: dict[str, str] = {}
    for name in data:
        hub_split = split or (None if Path(name).exists() else DEFAULT_SPLITS[benchmark])
        for row in read_rows(name, hub_split):
            loaded.rows += 1
            try:
                if row.error:
                    raise RowError(row.error)
                if not isinstance(row.value, Mapping):
                    raise RowError(f"expected a JSON object, got {type(row.value).__name__}")
                item = LOADERS[benchmark](row.value, row)
            except RowError as error:
                row_id = _row_id(benchmark, row.value)
                loaded.malformed.append(Malformed(row_id, row.source, str(error)))
                if len(loaded.failed) < SAMPLE_ROWS:
                    loaded.failed.append(row)
                continue
            if item.id in seen:
                reason = f"duplicate id (first seen at {seen[item.id]})"
                loaded.malformed.append(Malformed(item.id, row.source, reason))
                continue
            seen[item.id] = row.source
            loaded.items.append(item)
    return loaded


SAMPLE_ROWS = 20


def looks_like(rows: Iterable[Row], but: str) -> str | None:
    """The benchmark (other than ``but``) whose loader reads the most of ``rows``, if any."""
    rows = [row for row in rows if isinstance(row.value, Mapping) and not row.error]
    best, most = None, 0
    for name, loader in LOADERS.items():
        if name == but:
            continue
        fits = 0
        for row in rows:
            try:
                loader(row.value, row)
                fits += 1
            except RowError:
                pass
        if fits > most:
            best, most = name, fits
    return best


def usable(loaded: Loaded) -> Loaded:
    """``loaded``, unless every row was malformed: then a :class:`SourceError` saying why the
    first row failed and which benchmark the rows look like (an RM-Bench file given to
    ``--benchmark rewardbench``)."""
    if loaded.rows and not loaded.items and len(loaded.malformed) == loaded.rows:
        raise SourceError(", ".join(loaded.data), no_usable_rows(loaded))
    return loaded


def no_usable_rows(loaded: Loaded) -> str:
    """Why nothing can be judged: the first row's problem, and which benchmark the rows fit."""
    first = loaded.malformed[0]
    message = (
        f"none of its {loaded.rows} rows is a {loaded.benchmark} row "
        f"(first, at {first.source}: {first.reason})"
    )
    other = looks_like(loaded.failed, loaded.benchmark)
    if other:
        message += f"; they look like {other} rows: --benchmark {other}"
    return message


def rewardbench_item(row: Mapping[str, Any], where: Row) -> Item:
    """RewardBench ``filtered`` rows: ``prompt, chosen, rejected, subset, id`` (+ model names)."""
    item_id = _id(row, "id")
    subset = _text(row, "subset")
    example = _example(
        item_id, _context(row, "prompt"), _text(row, "chosen"), _text(row, "rejected")
    )
    meta = {"subset": subset}
    return Item(item_id, where.source, [Comparison(item_id, item_id, example, meta)])


def rm_bench_item(row: Mapping[str, Any], where: Row) -> Item:
    """RM-Bench rows: ``id, prompt, chosen[3], rejected[3], domain``; all 9 style pairings.

    The per-domain files of the RM-Bench repository have no ``domain`` field; it is then taken
    from the file name (``chat_filtered.json`` → ``chat``).
    """
    domain = row.get("domain", _domain_from_file(where.file))
    if not isinstance(domain, str) or not domain:
        raise RowError("missing field 'domain' (and the file name does not name one)")
    item_id = f"{domain}/{_id(row, 'id')}"
    chosen, rejected = _styles(row, "chosen"), _styles(row, "rejected")
    context = _context(row, "prompt")
    group = next((d for d in RM_BENCH_DOMAINS if domain.startswith(d)), domain)
    comparisons = []
    for i, good in enumerate(chosen):
        for j, bad in enumerate(rejected):
            meta = {"domain": domain, "group": group, "chosen_style": i, "rejected_style": j}
            key = f"{item_id}/c{i}r{j}"
            comparisons.append(Comparison(key, item_id, _example(key, context, good, bad), meta))
    return Item(item_id, where.source, comparisons)


def rmb_item(row: Mapping[str, Any], where: Row) -> Item:
    """RMB rows, pairwise (``pair_uid, chosen, reject``) or best-of-N (``bon_uid, bon_best,
    loser_list``), both with ``conversation_input`` and ``category_path``."""
    path = _text(row, "category_path")
    parts = path.split("/")
    kind = {"Pairwise_set": "pairwise", "BoN_set": "bon"}.get(parts[0])
    if kind is None or len(parts) < 2:
        raise RowError(
            f"field 'category_path' must start with Pairwise_set/ or BoN_set/, got {path!r}"
        )
    context = _conversation(row, "conversation_input")
    meta = {"set": kind, "goal": parts[1], "category": path}
    if kind == "pairwise":
        item_id = f"pairwise/{_id(row, 'pair_uid')}"
        chosen, rejected = (
            _answer(row.get("chosen"), "chosen"),
            _answer(row.get("reject"), "reject"),
        )
        example = _example(item_id, context, chosen, rejected)
        return Item(item_id, where.source, [Comparison(item_id, item_id, example, meta)])
    item_id = f"bon/{_id(row, 'bon_uid')}"
    best = _answer(row.get("bon_best"), "bon_best")
    losers = row.get("loser_list")
    if not isinstance(losers, list) or not losers:
        raise RowError("field 'loser_list' must be a non-empty list")
    comparisons = []
    for k in range(len(losers)):
        key, loser = f"{item_id}/loser{k}", _answer(losers[k], f"loser_list[{k}]")
        group_meta = {**meta, "loser": k, "losers": len(losers)}
        comparisons.append(
            Comparison(key, item_id, _example(key, context, best, loser), group_meta)
        )
    return Item(item_id, where.source, comparisons)


def judgebench_item(row: Mapping[str, Any], where: Row) -> Item:
    """JudgeBench rows: ``pair_id, source, question, response_A, response_B, label`` (A>B/B>A)."""
    item_id = _id(row, "pair_id")
    label = row.get("label")
    if label not in ("A>B", "B>A"):
        raise RowError(f"field 'label' must be 'A>B' or 'B>A', got {label!r}")
    source = _text(row, "source")
    category = "mmlu-pro" if source.startswith("mmlu-pro") else source
    example = _example(
        item_id,
        _context(row, "question"),
        _text(row, "response_A"),
        _text(row, "response_B"),
        label="A" if label == "A>B" else "B",
    )
    meta = {"source": source, "category": category}
    return Item(item_id, where.source, [Comparison(item_id, item_id, example, meta)])


def rewardbench2_item(row: Mapping[str, Any], where: Row) -> Item:
    """RewardBench 2 rows: ``id, prompt, chosen[], rejected[], num_correct, num_incorrect,
    total_completions, models, subset``.

    Outside Ties a row is best-of-N: ``chosen[0]`` against each rejected response (ids
    ``ID/rJ``). A Ties row (id ``ref:N`` or ``tied:N``) is judged every correct answer against
    every incorrect one (``ID/cIrJ``, label A) and every two correct answers against each other
    (``ID/cIcJ``, no label), which the Ties score's margins need.
    """
    item_id = _id(row, "id")
    subset = _text(row, "subset")
    if subset not in RB2_SUBSETS:
        raise RowError(f"field 'subset' must be one of {', '.join(RB2_SUBSETS)}, got {subset!r}")
    chosen, rejected = _texts(row, "chosen"), _texts(row, "rejected")
    for key, size in (("num_correct", len(chosen)), ("num_incorrect", len(rejected))):
        _count(row, key, size)
    _count(row, "num_rejected", len(rejected))  # the name some exports use
    _count(row, "total_completions", len(chosen) + len(rejected))
    context = _context(row, "prompt")
    if subset != RB2_TIES:
        comparisons = []
        for j, bad in enumerate(rejected):
            key, meta = f"{item_id}/r{j}", {"subset": subset, "rejected": len(rejected)}
            comparisons.append(
                Comparison(key, item_id, _example(key, context, chosen[0], bad), meta)
            )
        return Item(item_id, where.source, comparisons)
    kind, _, prompt = item_id.partition(":")
    if kind not in RB2_TIE_TYPES or not prompt.isdigit():
        raise RowError(f"a Ties row needs an id 'ref:N' or 'tied:N', got {item_id!r}")
    if kind == "tied" and len(chosen) < 2:
        raise RowError("a 'tied' Ties row needs at least two correct answers in 'chosen'")
    base = {"subset": subset, "tie": kind, "prompt": int(prompt)}
    base |= {"correct": len(chosen), "incorrect": len(rejected)}
    comparisons = []
    for i, good in enumerate(chosen):
        for j, bad in enumerate(rejected):
            key = f"{item_id}/c{i}r{j}"
            example = _example(key, context, good, bad)
            comparisons.append(
                Comparison(key, item_id, example, {**base, "a": f"c{i}", "b": f"r{j}"})
            )
        for j in range(i + 1, len(chosen)):
            key = f"{item_id}/c{i}c{j}"
            example = _example(key, context, good, chosen[j], label=None)
            comparisons.append(
                Comparison(key, item_id, example, {**base, "a": f"c{i}", "b": f"c{j}"})
            )
    return Item(item_id, where.source, comparisons)


LOADERS: dict[str, Callable[[Mapping[str, Any], Row], Item]] = {
    "rewardbench": rewardbench_item,
    "rm-bench": rm_bench_item,
    "rmb": rmb_item,
    "judgebench": judgebench_item,
    "rewardbench2": rewardbench2_item,
}
_ID_FIELDS = {"rewardbench": ("id",), "rm-bench": ("id",), "rmb": ("pair_uid", "bon_uid")}
_ID_FIELDS |= {"judgebench": ("pair_id",), "rewardbench2": ("id",)}


def _row_id(benchmark: str, row: object) -> str | None:
    if not isinstance(row, Mapping):
        return None
    found = [row[key] for key in _ID_FIELDS[benchmark] if isinstance(row.get(key), str | int)]
    return str(found[0]) if found else None


def _id(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise RowError(f"field {key!r} must be a non-empty string or integer, got {value!r}")
    return str(value)


def _text(row: Mapping[str, Any], key: str, name: str | None = None) -> str:
    value = row.get(key)
    if not isinstance(value, str):
        got = "nothing" if value is None else type(value).__name__
        raise RowError(f"field {name or key!r} must be a string, got {got}")
    return value


def _answer(value: object, name: str) -> str:
    """RMB's ``{"answer": ..., "llm_name": ...}`` responses."""
    if not isinstance(value, Mapping):
        raise RowError(f"field {name!r} must be an object with an 'answer'")
    return _text(value, "answer", f"{name}.answer")


def _styles(row: Mapping[str, Any], key: str) -> list[str]:
    value = row.get(key)
    if (
        not isinstance(value, list)
        or len(value) != RM_BENCH_STYLES
        or not all(isinstance(v, str) for v in value)
    ):
        raise RowError(f"field {key!r} must be a list of {RM_BENCH_STYLES} strings")
    return value


def _texts(row: Mapping[str, Any], key: str) -> list[str]:
    value = row.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise RowError(f"field {key!r} must be a non-empty list of strings")
    return value


def _count(row: Mapping[str, Any], key: str, size: int) -> None:
    """A count column, when present, must match the list it counts."""
    value = row.get(key)
    if value is not None and value != size:
        raise RowError(f"field {key!r} is {value!r} but the lists hold {size}")


def _context(row: Mapping[str, Any], key: str) -> list[dict[str, str]]:
    """A prompt string (one user turn), or a message list as in preference test sets."""
    if isinstance(row.get(key), list):
        return _conversation(row, key)
    return [{"role": "user", "content": _text(row, key)}]


def _conversation(row: Mapping[str, Any], key: str) -> list[dict[str, str]]:
    """Messages with roles normalised (``Human``/``Assistant`` → ``user``/``assistant``).

    A system turn is kept: the RM-R1 templates reject it, and the item is reported as malformed.
    """
    value = row.get(key)
    if not isinstance(value, list) or not value:
        raise RowError(f"field {key!r} must be a non-empty list of messages")
    messages = []
    for index, turn in enumerate(value):
        where = f"{key}[{index}]"
        if not isinstance(turn, Mapping):
            raise RowError(f"field {where!r} must be an object with 'role' and 'content'")
        role = turn.get("role")
        normal = _ROLES.get(role.lower()) if isinstance(role, str) else None
        if normal is None:
            raise RowError(f"field {where + '.role'!r}: unknown role {role!r}")
        messages.append({"role": normal, "content": _text(turn, "content", f"{where}.content")})
    return messages


def _example(
    example_id: str, context: list[dict[str, str]], a: str, b: str, label: str | None = "A"
) -> PairwiseExample:
    try:
        return PairwiseExample(
            id=example_id, context=context, response_a=a, response_b=b, label=label
        )
    except ValidationError as error:
        raise RowError("; ".join(problem["msg"] for problem in error.errors())) from None


def _domain_from_file(file: str | None) -> str | None:
    """``safety-refuse_filtered.json`` → ``safety-refuse``; ``None`` for other names."""
    if file is None:
        return None
    stem = Path(file).stem.split("_")[0]
    return stem if stem.startswith(RM_BENCH_DOMAINS) else None
