"""Judge health: how a pairwise judge behaves, apart from whether it is right.

One definition per number, shared by ``rmr1 eval`` reports and the training metrics (TRL, veRL,
OpenRLHF, ``rmr1 serve``: :class:`Tally` below).
Every function is pure and takes judged pairs as mappings (the judgments file's records) or as
:class:`~rmr1_plugins.schema.PairResult` objects. A *judgment* is one generation (``verdict``
relative to the pair as stored, ``swapped`` when the judge saw the responses the other way round,
``finish_reason``); a *pair* is one comparison with its combined ``verdict``, ``orders_agree``,
``label`` and ``judgments``. Every rate is a fraction (0-1), or ``None`` when nothing was measured.

- **slot-A rate** (position bias): of the judgments with a parsed verdict, the fraction that
  picked the response shown in slot A; 0.5 means no position bias.
- **order consistency**: of the pairs judged in both orders where at least one order reached a
  verdict (``orders_agree`` is not ``None``), the fraction whose two orders gave the same
  verdict; a pair neither order could decide says nothing about position.
- **unparsed rate**: the fraction of judgments without a parsed verdict.
- **truncated rate**: the fraction of judgments whose generation stopped at the token limit
  (``finish_reason == "length"``).
- **length bias**: of the pairs with a combined verdict whose two responses differ in length (in
  characters), the fraction where the verdict picked the longer response (``longer_wins``);
  0.5 means no preference for length. ``longer_preferred`` is the same fraction for the label
  (the preferred response is the longer one), the value an always-right judge would have.
- **invalid probabilities rate**: the fraction of judgments whose verdict log-probabilities were
  impossible (NaN, above 0: ``prob_invalid``); they count as absent and the hard verdict stands.
- **confidence**: the mean, over the judgments with a verdict probability (``prob_a``), of
  ``max(prob_a, 1 - prob_a)``: 0.5 is a coin flip, 1 a certain judge.
- **length correlation** (length bias within a group): the Pearson correlation between the
  rewards of one group's completions and their lengths in characters, over the completions with
  a reward; undefined (``None``) with fewer than two of them or when the rewards or the lengths
  are all equal. Over several groups it is the plain mean of the groups where it is defined.

``rmr1 eval`` reports (:func:`summary`) and the training metrics (under :data:`PREFIX`, see
:class:`Tally`) use the same names and the same fractions; docs/concepts/health.md
lists the keys.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

LENGTH_KEY = "chars"  # [len(response_a), len(response_b)] in a pair's ``meta``
_FLIP = {"A": "B", "B": "A"}


def _get(thing: Any, key: str, default: Any = None) -> Any:
    if isinstance(thing, Mapping):
        return thing.get(key, default)
    return getattr(thing, key, default)


def _fraction(hits: int, total: int) -> float | None:
    return hits / total if total else None


def shown_verdict(judgment: Any) -> str | None:
    """The slot the judge picked as it saw the pair (``None`` without a parsed verdict)."""
    verdict = _get(judgment, "verdict")
    if verdict is None:
        return None
    return _FLIP[verdict] if _get(judgment, "swapped", False) else verdict


def slot_a_rate(judgments: Iterable[Any]) -> float | None:
    shown = [v for v in map(shown_verdict, judgments) if v is not None]
    return _fraction(shown.count("A"), len(shown))


def unparsed_rate(judgments: Sequence[Any]) -> float | None:
    return _fraction(sum(_get(j, "verdict") is None for j in judgments), len(judgments))


def truncated_rate(judgments: Sequence[Any]) -> float | None:
    return _fraction(sum(_get(j, "finish_reason") == "length" for j in judgments), len(judgments))


def invalid_probs_rate(judgments: Sequence[Any]) -> float | None:
    return _fraction(sum(bool(_get(j, "prob_invalid", False)) for j in judgments), len(judgments))


def orders_agree_rate(pairs: Iterable[Any]) -> float | None:
    agree = [a for a in (_get(p, "orders_agree") for p in pairs) if a is not None]
    return _fraction(sum(agree), len(agree))


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
        "longer_wins": _fraction(wins, decided),
        "decided": decided,
        "longer_preferred": _fraction(preferred, labelled),
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
        "slot_a": slot_a_rate(judgments),
        "orders_agree": orders_agree_rate(pairs),
        "both_orders": sum(_get(p, "orders_agree") is not None for p in pairs),
        "unparsed": unparsed_rate(judgments),
        "truncated": truncated_rate(judgments),
        "invalid_probs": invalid_probs_rate(judgments),
        "longer_wins": bias["longer_wins"],
        "length_decided": bias["decided"],
        "longer_preferred": bias["longer_preferred"],
    }


def confidence(judgments: Iterable[Any]) -> float | None:
    """Mean ``max(prob_a, 1 - prob_a)`` over the judgments that carry ``prob_a`` (0.5 to 1)."""
    probs = [p for p in (_get(j, "prob_a") for j in judgments) if p is not None]
    return sum(max(p, 1 - p) for p in probs) / len(probs) if probs else None


def length_correlation(rewards: Sequence[float | None], sizes: Sequence[int]) -> float | None:
    """Pearson correlation of one group's rewards with its completions' lengths (see above)."""
    points = [(float(r), float(n)) for r, n in zip(rewards, sizes, strict=True) if r is not None]
    if len(points) < 2:
        return None
    mean_r = sum(r for r, _ in points) / len(points)
    mean_n = sum(n for _, n in points) / len(points)
    cov = sum((r - mean_r) * (n - mean_n) for r, n in points)
    var_r = sum((r - mean_r) ** 2 for r, _ in points)
    var_n = sum((n - mean_n) ** 2 for _, n in points)
    if var_r <= 0 or var_n <= 0:
        return None
    return max(-1.0, min(1.0, cov / math.sqrt(var_r * var_n)))


PREFIX = "rmr1_health/"
METRICS = (
    "slot_a",
    "orders_agree",
    "unparsed",
    "truncated",
    "confidence",
    "invalid_probs",
    "longer_wins",
    "length_corr",
)
# A per-sample value where the sample measured nothing: no preference, no information.
NEUTRAL = {"slot_a": 0.5, "confidence": 0.5, "longer_wins": 0.5, "length_corr": 0.0}


@dataclass
class Tally:
    """Running counts behind the training health metrics; add pairs and groups, read rates.

    The same definitions as the functions above, as fractions: :meth:`rates` gives the pooled
    rate of everything added (``None`` where nothing was measured: TRL logs only the measured
    ones; ``rmr1 serve`` reports them in ``/stats``). :meth:`sample_logs` gives a per-sample
    value for every metric, so every sample of a run carries the same keys and a step's mean of
    them is the step's rate: a value nothing measured is :data:`NEUTRAL` (0 for the others), and
    ``orders_agree`` is the fraction of the sample's comparisons judged in both orders whose
    orders agreed (0 with one order).
    """

    judgments: int = 0
    parsed: int = 0
    slot_a: int = 0
    truncated: int = 0
    with_prob: int = 0
    confidence_sum: float = 0.0
    invalid_probs: int = 0
    pairs: int = 0
    both_orders: int = 0
    agree: int = 0
    length_decided: int = 0
    longer_wins: int = 0
    groups: int = 0
    length_corr_sum: float = 0.0

    def add_pair(self, pair: Any, size: tuple[int, int] | None = None) -> None:
        """One judged pair (a :class:`PairResult` or a judgments-file record) and, when known,
        the lengths of its two responses as stored (``[len(response_a), len(response_b)]``)."""
        judgments = list(_get(pair, "judgments") or ())
        self.pairs += 1
        self.judgments += len(judgments)
        for judgment in judgments:
            shown = shown_verdict(judgment)
            self.parsed += shown is not None
            self.slot_a += shown == "A"
            self.truncated += _get(judgment, "finish_reason") == "length"
            if (prob := _get(judgment, "prob_a")) is not None:
                self.with_prob += 1
                self.confidence_sum += max(prob, 1 - prob)
            self.invalid_probs += bool(_get(judgment, "prob_invalid", False))
        if (agree := _get(pair, "orders_agree")) is not None:
            self.both_orders += 1
            self.agree += bool(agree)
        verdict = _get(pair, "verdict")
        if size is not None and size[0] != size[1] and verdict is not None:
            self.length_decided += 1
            self.longer_wins += verdict == ("A" if size[0] > size[1] else "B")

    def add_group(self, rewards: Sequence[float | None], sizes: Sequence[int]) -> None:
        """One group's rewards and completion lengths (for the length correlation)."""
        if (corr := length_correlation(rewards, sizes)) is not None:
            self.groups += 1
            self.length_corr_sum += corr

    def merge(self, other: Tally) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def rates(self) -> dict[str, float | None]:
        """Every metric of :data:`METRICS` (without the prefix) over everything added."""

        def ratio(hits: float, total: int) -> float | None:
            return hits / total if total else None

        return {
            "slot_a": ratio(self.slot_a, self.parsed),
            "orders_agree": ratio(self.agree, self.both_orders),
            "unparsed": ratio(self.judgments - self.parsed, self.judgments),
            "truncated": ratio(self.truncated, self.judgments),
            "confidence": ratio(self.confidence_sum, self.with_prob),
            "invalid_probs": ratio(self.invalid_probs, self.judgments),
            "longer_wins": ratio(self.longer_wins, self.length_decided),
            "length_corr": ratio(self.length_corr_sum, self.groups),
        }

    def sample_logs(self) -> dict[str, float]:
        """One value per metric under :data:`PREFIX`, the same keys whatever was measured."""
        values = self.rates()
        values["orders_agree"] = self.agree / self.pairs if self.pairs else 0.0
        return {
            PREFIX + name: float(NEUTRAL.get(name, 0.0) if value is None else value)
            for name, value in values.items()
        }


def comparison_tally(
    rewards: Any, texts: Sequence[str] | None, index: int | None = None, group: bool = True
) -> Tally:
    """The :class:`Tally` of one judged group: a :class:`~rmr1_plugins.rewards.engine.GroupRewards`
    whose completions, then reference, are ``texts`` (:func:`~rmr1_plugins.rewards.engine.texts_of`;
    ``None``: no length metrics).

    With ``index``, only the comparisons completion ``index`` took part in, plus the group's
    length correlation: that completion's per-sample values. ``group=False`` leaves the length
    correlation out (completions judged each against the reference form no group).
    """
    tally = Tally()
    comparisons = rewards.comparisons if index is None else rewards.involving(index)
    for c in comparisons:
        if c.result is not None:
            size = None if texts is None else (len(texts[c.first]), len(texts[c.second]))
            tally.add_pair(c.result, size)
    if texts is not None and group:
        tally.add_group(rewards.rewards, [len(t) for t in texts[: len(rewards.rewards)]])
    return tally


def format_rates(rates: Mapping[str, float | None]) -> str:
    """``slot_a 0.52, unparsed 0.01, ...``: the measured rates on one line (logs)."""
    measured = [f"{name} {value:.3g}" for name, value in rates.items() if value is not None]
    return ", ".join(measured) or "nothing judged yet"
