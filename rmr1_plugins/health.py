"""Judge health: how a pairwise judge behaves, apart from whether it is right.

One definition per number, shared by ``rmr1 eval`` reports and (later) the training metrics.
Every function is pure and takes judged pairs as mappings (the judgments file's records) or as
:class:`~rmr1_plugins.schema.PairResult` objects. A *judgment* is one generation (``verdict``
relative to the pair as stored, ``swapped`` when the judge saw the responses the other way round,
``finish_reason``); a *pair* is one comparison with its combined ``verdict``, ``orders_agree``,
``label`` and ``judgments``. Every rate is a percentage, or ``None`` when nothing was measured.

- **slot-A rate** (position bias): of the judgments with a parsed verdict, the percentage that
  picked the response shown in slot A; 50 means no position bias.
- **order consistency**: of the pairs judged in both orders, the percentage whose two orders gave
  the same verdict (``orders_agree``).
- **unparsed rate**: the percentage of judgments without a parsed verdict.
- **truncated rate**: the percentage of judgments whose generation stopped at the token limit
  (``finish_reason == "length"``).
- **length bias**: of the pairs with a combined verdict whose two responses differ in length (in
  characters), the percentage where the verdict picked the longer response (``longer_wins``);
  50 means no preference for length. ``longer_preferred`` is the same percentage for the label
  (the preferred response is the longer one), the value an always-right judge would have.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

LENGTH_KEY = "chars"  # [len(response_a), len(response_b)] in a pair's ``meta``
_FLIP = {"A": "B", "B": "A"}


def _get(thing: Any, key: str, default: Any = None) -> Any:
    if isinstance(thing, Mapping):
        return thing.get(key, default)
    return getattr(thing, key, default)


def _percent(hits: int, total: int) -> float | None:
    return 100 * hits / total if total else None


def shown_verdict(judgment: Any) -> str | None:
    """The slot the judge picked as it saw the pair (``None`` without a parsed verdict)."""
    verdict = _get(judgment, "verdict")
    if verdict is None:
        return None
    return _FLIP[verdict] if _get(judgment, "swapped", False) else verdict


def slot_a_rate(judgments: Iterable[Any]) -> float | None:
    shown = [v for v in map(shown_verdict, judgments) if v is not None]
    return _percent(shown.count("A"), len(shown))


def unparsed_rate(judgments: Sequence[Any]) -> float | None:
    return _percent(sum(_get(j, "verdict") is None for j in judgments), len(judgments))


def truncated_rate(judgments: Sequence[Any]) -> float | None:
    return _percent(sum(_get(j, "finish_reason") == "length" for j in judgments), len(judgments))


def order_consistency(pairs: Iterable[Any]) -> float | None:
    agree = [a for a in (_get(p, "orders_agree") for p in pairs) if a is not None]
    return _percent(sum(agree), len(agree))


def lengths(
    pair: Any, sizes: Mapping[str, tuple[int, int]] | None = None
) -> tuple[int, int] | None:
    """The pair's response lengths: from ``sizes`` (by pair id), ``meta["chars"]`` or the
    pair's ``example`` texts, whichever is there first."""
    if sizes is not None and (size := sizes.get(str(_get(pair, "id")))) is not None:
        return size
    meta = _get(pair, "meta") or {}
    chars = meta.get(LENGTH_KEY) if isinstance(meta, Mapping) else None
    if isinstance(chars, Sequence) and len(chars) == 2 and all(isinstance(c, int) for c in chars):
        return chars[0], chars[1]
    example = _get(pair, "example")
    if example is not None:
        return len(_get(example, "response_a")), len(_get(example, "response_b"))
    return None


def length_bias(
    pairs: Iterable[Any], sizes: Mapping[str, tuple[int, int]] | None = None
) -> dict[str, Any]:
    """``longer_wins`` and ``longer_preferred`` (see the module docstring) and their counts."""
    wins = decided = preferred = labelled = 0
    for pair in pairs:
        size = lengths(pair, sizes)
        if size is None or size[0] == size[1]:
            continue
        longer = "A" if size[0] > size[1] else "B"
        if (verdict := _get(pair, "verdict")) is not None:
            decided += 1
            wins += verdict == longer
        if (label := _get(pair, "label")) is not None:
            labelled += 1
            preferred += label == longer
    return {
        "longer_wins": _percent(wins, decided),
        "decided": decided,
        "longer_preferred": _percent(preferred, labelled),
    }


def summary(
    pairs: Sequence[Any], sizes: Mapping[str, tuple[int, int]] | None = None
) -> dict[str, Any]:
    """Every health number for ``pairs``, with the counts they are measured on."""
    judgments = [j for p in pairs for j in (_get(p, "judgments") or ())]
    bias = length_bias(pairs, sizes)
    return {
        "pairs": len(pairs),
        "judgments": len(judgments),
        "slot_a_rate": slot_a_rate(judgments),
        "order_consistency": order_consistency(pairs),
        "both_orders": sum(_get(p, "orders_agree") is not None for p in pairs),
        "unparsed_rate": unparsed_rate(judgments),
        "truncated_rate": truncated_rate(judgments),
        "longer_wins": bias["longer_wins"],
        "length_decided": bias["decided"],
        "longer_preferred": bias["longer_preferred"],
    }
