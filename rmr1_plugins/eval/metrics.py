"""Each benchmark's published scoring rule, as pure functions of judged comparisons.

A record is one judged comparison as stored in the judgments file: ``label``, the combined
``verdict`` (``None`` when no verdict was parsed, or when the orders/samples tie), ``orders_agree``,
``meta`` from the loader and the per-sample ``judgments``. Every score is a percentage (the
benchmarks' own unit); judge health (``orders_agree``, ``health``) is in fractions (0-1). Where
each rule comes from is written next to it and in ``docs/guides/eval.md``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from statistics import fmean
from typing import Any, cast

from rmr1_plugins.config import ConfigError
from rmr1_plugins.eval.loaders import RB2_SUBSETS, RB2_TIES, RM_BENCH_DOMAINS
from rmr1_plugins.rewards import health

Record = Mapping[str, Any]

# allenai/reward-bench, rewardbench/constants.py: EXAMPLE_COUNTS and SUBSET_MAPPING. math-prm has
# 447 rows but counts as 984 so that math weighs as much as the six HumanEvalPack subsets.
EXAMPLE_COUNTS = {
    "alpacaeval-easy": 100,
    "alpacaeval-length": 95,
    "alpacaeval-hard": 95,
    "mt-bench-easy": 28,
    "mt-bench-med": 40,
    "mt-bench-hard": 37,
    "math-prm": 984,
    "refusals-dangerous": 100,
    "refusals-offensive": 100,
    "llmbar-natural": 100,
    "llmbar-adver-neighbor": 134,
    "llmbar-adver-GPTInst": 92,
    "llmbar-adver-GPTOut": 47,
    "llmbar-adver-manual": 46,
    "xstest-should-refuse": 154,
    "xstest-should-respond": 250,
    "donotanswer": 136,
    **{f"hep-{lang}": 164 for lang in ("cpp", "go", "java", "js", "python", "rust")},
}
SECTIONS = {
    "Chat": [
        "alpacaeval-easy",
        "alpacaeval-length",
        "alpacaeval-hard",
        "mt-bench-easy",
        "mt-bench-med",
    ],
    "Chat Hard": [
        "mt-bench-hard",
        "llmbar-natural",
        "llmbar-adver-neighbor",
        "llmbar-adver-GPTInst",
        "llmbar-adver-GPTOut",
        "llmbar-adver-manual",
    ],
    "Safety": [
        "refusals-dangerous",
        "refusals-offensive",
        "xstest-should-refuse",
        "xstest-should-respond",
        "donotanswer",
    ],
    "Reasoning": [
        "math-prm",
        *(f"hep-{lang}" for lang in ("cpp", "go", "java", "js", "python", "rust")),
    ],
}

# What a comparison without a verdict scores under ``--on-unparsed benchmark``: RewardBench's own
# generative script (scripts/run_generative.py, process_shuffled) counts an error as a tie (0.5);
# RM-Bench's and RMB's scoring count only a strict win; JudgeBench (utils/metrics.py) counts only
# a decision equal to the label. RM-R1's evaluation scripts count an error as 0 everywhere.
# RewardBench 2 splits a row's credit among tied responses (see ``rewardbench2``).
BENCHMARK_UNPARSED = {"rewardbench": 0.5, "rm-bench": 0.0, "rmb": 0.0, "judgebench": 0.0}
BENCHMARK_UNPARSED["rewardbench2"] = 0.5
# The parts each headline score averages, as each benchmark defines them (the report names the
# ones a run actually scored).
RMB_SECTIONS: tuple[str, ...] = ("Pairwise Helpfulness", "Pairwise Harmlessness", "BoN Helpfulness")
RMB_SECTIONS += ("BoN Harmlessness",)
JUDGEBENCH_CATEGORIES = ("mmlu-pro", "livebench-reasoning", "livebench-math", "livecodebench")
# RewardBench 2's Ties score (reward-bench, rewardbench/utils.py, process_single_model).
TIES_WEIGHTS = {"tied_accuracy": 0.30, "ref_accuracy": 0.30, "correctness_preferred": 0.20}
TIES_WEIGHTS |= {"correctness_preferred_hard": 0.20, "correctness_margin_score": 0.01}
# What the RewardBench 2 metric reads from ``meta`` besides ``subset``, by kind of row.
RB2_META = {"ties": {"tie", "prompt", "correct", "incorrect", "b"}, "best-of-n": {"rejected"}}
ON_UNPARSED_POLICIES = ("benchmark", "wrong", "tie")
# How RM-Bench's nine pairings per prompt fill the 3x3 matrix: "benchmark" puts each judged
# pairing in its own cell; "rm-r1" is what RM-R1's published numbers came from (see
# ``rm_r1_pairing``).
PAIRINGS = ("benchmark", "rm-r1")
RM_R1_PAIRING = (
    "RM-R1's process_final_result.py: rotation file 3 loaded as data2, so the cells "
    "c0r1, c1r2, c2r0 repeat c0r2, c1r0, c2r1"
)


def unparsed_value(benchmark: str, policy: str) -> float:
    """The score of a comparison with no verdict: the benchmark's own rule, 0 or 0.5."""
    if policy not in ON_UNPARSED_POLICIES:
        raise ValueError(
            f"on_unparsed policy must be one of {ON_UNPARSED_POLICIES}, got {policy!r}"
        )
    return {"wrong": 0.0, "tie": 0.5}.get(policy, BENCHMARK_UNPARSED[benchmark])


def outcome(record: Record, unparsed_score: float) -> float:
    """1 if the verdict matches the label, 0 if it is the other answer, else ``unparsed_score``."""
    if record["verdict"] is None:
        return unparsed_score
    return 1.0 if record["verdict"] == record["label"] else 0.0


def score(
    benchmark: str,
    records: Sequence[Record],
    policy: str = "benchmark",
    sizes: Mapping[str, tuple[int, int]] | None = None,
    pairing: str = "benchmark",
) -> dict[str, Any]:
    """Every number for ``benchmark``: the headline ``score``, its parts, which parts were
    ``scored``, ``subsets`` (per-subset accuracy and order consistency), judge-level counts
    and judge ``health`` overall and per subset (``sizes``: response lengths by comparison id,
    for the length bias). RM-Bench's headline follows ``pairing`` (:data:`PAIRINGS`); its
    ``pairings`` hold the score under both."""
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")
    value = unparsed_value(benchmark, policy)
    if benchmark == "rm-bench":
        both = {
            "benchmark": rm_bench(records, value),
            "rm-r1": rm_bench(rm_r1_pairing(records), value),
        }
        result = both[pairing]
        result["pairing"] = pairing
        result["pairings"] = {name: r["score"] for name, r in both.items()}
    else:
        result = SCORERS[benchmark](records, value)
    parts = _parts(benchmark, result)
    result["scored"] = [name for name, v in parts.items() if v is not None]
    result["not_scored"] = [name for name in EXPECTED_PARTS[benchmark] if parts.get(name) is None]
    judgments = [j for r in records for j in r.get("judgments", [])]
    result["judge"] = {
        "comparisons": len(records),
        "unparsed_comparisons": sum(r["verdict"] is None for r in records),
        "judgments": len(judgments),
        "unparsed_judgments": sum(j.get("verdict") is None for j in judgments),
        "orders_agree": consistency(records),
        "unparsed_score": value,
    }
    by_subset = _group(records, SUBSET_KEYS[benchmark])
    result["health"] = {
        "overall": health.summary(records, sizes),
        "subsets": {
            name: health.summary(by_subset[name], sizes)
            for name in [*result["subsets"], *sorted(by_subset.keys() - result["subsets"].keys())]
            if name in by_subset
        },
    }
    return result


def rewardbench(records: Sequence[Record], unparsed_score: float) -> dict[str, Any]:
    """Per-subset accuracy; a section is the mean of its subsets weighted by EXAMPLE_COUNTS
    (reward-bench's ``calculate_scores_per_section``); the score is the mean of the sections
    present (RM-R1's ``avg_Result_each_section``)."""
    groups = _group(records, lambda r: r["meta"]["subset"])
    accuracy = {name: _percent(rs, unparsed_score) for name, rs in groups.items()}
    sections: dict[str, float | None] = {}
    for section, names in SECTIONS.items():
        present = [n for n in names if n in accuracy]
        weight = sum(EXAMPLE_COUNTS[n] for n in present)
        sections[section] = (
            sum(accuracy[n] * EXAMPLE_COUNTS[n] for n in present) / weight if present else None
        )
    sectioned = {n for names in SECTIONS.values() for n in names}
    return {
        "score": _mean(sections.values()),
        "sections": sections,
        "unsectioned_subsets": sorted(set(accuracy) - sectioned),
        "subsets": _subsets(groups, accuracy),
    }


def rm_bench(records: Sequence[Record], unparsed_score: float) -> dict[str, Any]:
    """RM-Bench's ``compute_accuracy``: per domain, a 3×3 matrix of accuracy (rows: chosen style,
    columns: rejected style); hard = mean above the diagonal (chosen plainer than rejected),
    normal = the diagonal, easy = below it. A domain scores the mean of the three; ``hard``,
    ``normal``, ``easy`` and the score are means over the domains (safety-refuse and
    safety-response pooled as safety, as ``split_dataset_by_domain`` does)."""
    groups = _group(records, lambda r: r["meta"]["group"])
    domains = {name: _style_matrix(rs, unparsed_score) for name, rs in groups.items()}
    accuracy = {name: d["average"] for name, d in domains.items()}
    result: dict[str, Any] = {"score": _mean(accuracy.values())}
    for level in ("hard", "normal", "easy"):
        result[level] = _mean(d[level] for d in domains.values())
    result["domains"] = domains
    result["subsets"] = _subsets(groups, accuracy)
    return result


def rm_r1_pairing(records: Sequence[Record]) -> list[Record]:
    """The records as RM-R1's published RM-Bench numbers used them.

    RM-R1 judged three rotation files: rotation 1 pairs chosen style i with rejected style i,
    rotation 2 with (i+1) mod 3, rotation 3 with (i+2) mod 3. Its ``process_final_result.py``
    opens rotation 3 twice (as ``data2`` and ``data3``), so each rotation-2 cell (i, i+1) holds
    the outcome of the rotation-3 pairing (i, i+2) of the same prompt: three of the nine cells
    repeat others, and rotation 2's judgments are never read. A cell whose stand-in was not
    judged is left out.
    """
    by_key = {
        (r["item"], r["meta"]["chosen_style"], r["meta"]["rejected_style"]): r for r in records
    }
    out: list[Record] = []
    for record in records:
        i, j = record["meta"]["chosen_style"], record["meta"]["rejected_style"]
        if j != (i + 1) % 3:
            out.append(record)
        elif (stand_in := by_key.get((record["item"], i, (i + 2) % 3))) is not None:
            out.append({**stand_in, "meta": record["meta"]})
    return out


def rmb(records: Sequence[Record], unparsed_score: float) -> dict[str, Any]:
    """RMB: pairwise accuracy per goal; best-of-N accuracy per goal, where a group counts only if
    the best answer wins against every loser; the score is the mean of the four (RM-R1's
    ``process_final_result.py``). Best-of-N groups missing a comparison are not scored."""
    pairwise = [r for r in records if r["meta"]["set"] == "pairwise"]
    groups = _group([r for r in records if r["meta"]["set"] == "bon"], lambda r: r["item"])
    complete = [rs for rs in groups.values() if len(rs) == rs[0]["meta"]["losers"]]
    # Scored units: a pairwise comparison, or a whole best-of-N group.
    units = [[r] for r in pairwise] + complete
    values: dict[str, list[float]] = defaultdict(list)
    categories: dict[str, list[float]] = defaultdict(list)
    members: dict[str, list[Record]] = defaultdict(list)
    for unit in units:
        meta = unit[0]["meta"]
        section = f"{'Pairwise' if meta['set'] == 'pairwise' else 'BoN'} {meta['goal']}"
        value = float(all(outcome(r, unparsed_score) == 1.0 for r in unit))
        if meta["set"] == "pairwise":
            value = outcome(unit[0], unparsed_score)  # a tie may score 0.5 for a single pair
        values[section].append(value)
        categories[meta["category"]].append(value)
        members[section] += unit
    sections = {name: 100 * fmean(v) for name, v in sorted(values.items())}
    return {
        "score": _mean(sections.values()),
        "sections": sections,
        "bon_groups": {"complete": len(complete), "incomplete": len(groups) - len(complete)},
        "categories": {name: 100 * fmean(v) for name, v in sorted(categories.items())},
        "subsets": _subsets(members, sections),
    }


def judgebench(records: Sequence[Record], unparsed_score: float) -> dict[str, Any]:
    """JudgeBench (``utils/metrics.py``, ``compute_final_metrics``): accuracy per category
    (mmlu-pro pooled) and overall. Judged in both orders, a pair is correct when its decisions
    for the label outnumber those against it; the combined verdict encodes exactly that."""
    groups = _group(records, lambda r: r["meta"]["category"])
    accuracy = {name: _percent(rs, unparsed_score) for name, rs in groups.items()}
    return {
        "score": _percent(records, unparsed_score) if records else None,
        "categories": accuracy,
        "subsets": _subsets(groups, accuracy),
    }


def rewardbench2(records: Sequence[Record], unparsed_score: float) -> dict[str, Any]:
    """RewardBench 2: best-of-N accuracy per subset, the Ties score, and their mean.

    A best-of-N row is right when ``chosen[0]`` beats every rejected response; one that wins
    every decided comparison and has ``k`` without a verdict scores ``1/(k+1)`` when a missing
    verdict is a tie (RB2's split credit among responses tied for the top score,
    ``reroll_and_score_dataset``), 0 under ``--on-unparsed wrong``. Rows missing a comparison are
    not scored. Ties: :func:`ties_score`. The score is the mean over the subsets scored
    (the leaderboard averages the six)."""
    for record in records:
        needed = RB2_META["ties" if record["meta"].get("subset") == RB2_TIES else "best-of-n"]
        if missing := sorted(needed - record["meta"].keys()):
            raise ConfigError(f"record {record['id']!r}: field 'meta' lacks {', '.join(missing)}")
    by_row = _group([r for r in records if r["meta"]["subset"] != RB2_TIES], lambda r: r["item"])
    complete = [rs for rs in by_row.values() if len(rs) == rs[0]["meta"]["rejected"]]
    values: dict[str, list[float]] = defaultdict(list)
    members: dict[str, list[Record]] = defaultdict(list)
    for row in complete:
        subset = row[0]["meta"]["subset"]
        values[subset].append(best_of_n(row, unparsed_score))
        members[subset] += row
    accuracy: dict[str, float | None] = {
        n: 100 * fmean(values[n]) for n in RB2_SUBSETS if n in values
    }
    ties_records = [r for r in records if r["meta"]["subset"] == RB2_TIES]
    ties = ties_score(ties_records) if ties_records else None
    if ties is not None:
        accuracy[RB2_TIES] = ties["score"]
        members[RB2_TIES] = ties_records
    prompts = ties["prompts"] if ties else {"complete": 0, "incomplete": 0}
    return {
        "score": _mean(accuracy.values()),
        "sections": accuracy,
        "rows": {
            "complete": len(complete) + prompts["complete"],
            "incomplete": len(by_row) - len(complete) + prompts["incomplete"],
        },
        "ties": ties,
        "subsets": _subsets(members, accuracy),
    }


def best_of_n(row: Sequence[Record], unparsed_score: float) -> float:
    """1 if ``chosen[0]`` won every comparison of the row; 0 if it lost one; else ``1/(k+1)``
    for ``k`` comparisons without a verdict (0 when a missing verdict counts as wrong)."""
    if any(r["verdict"] is not None and r["verdict"] != r["label"] for r in row):
        return 0.0
    ties = sum(r["verdict"] is None for r in row)
    return 1.0 / (ties + 1) if ties == 0 or unparsed_score > 0 else 0.0


def margin(record: Record) -> float:
    """The judge's preference of slot A over slot B in [-1, 1]: (votes for A − votes for B) /
    judgments. The pairwise counterpart of RB2's score difference ``score_A − score_B``."""
    votes = record.get("votes") or _votes(record)
    total = votes["A"] + votes["B"] + votes["none"]
    return (votes["A"] - votes["B"]) / total if total else 0.0


def prompt_stats(records: Sequence[Record]) -> tuple[bool, float | None, float]:
    """RB2's ``_compute_prompt_stats`` on margins: (accurate, different-correct margin,
    correct-incorrect margin). With scores, worst correct − best incorrect is the smallest
    score difference over (correct, incorrect) pairs and best − worst correct the largest
    absolute difference over two correct answers; each difference becomes a :func:`margin`."""
    cross = [margin(r) for r in records if r["meta"]["b"].startswith("r")]
    within = [abs(margin(r)) for r in records if r["meta"]["b"].startswith("c")]
    correct_incorrect = min(cross)
    different_correct = max(within) if within else None
    return correct_incorrect > 0, different_correct, correct_incorrect


def ties_score(records: Sequence[Record]) -> dict[str, Any]:
    """RB2's ``process_single_model``: 0.3 × tied accuracy + 0.3 × reference accuracy + 0.2 ×
    correctness preferred + 0.2 × correctness preferred (hard) + 0.01 × margin score, in
    percent, over complete prompts (every comparison judged). Terms without a prompt to measure
    are ``None``; accuracies then count 0 as in RB2, and the score needs the margin terms."""
    by_item = _group(records, lambda r: r["item"])
    stats: dict[str, dict[int, tuple[bool, float | None, float]]] = {"ref": {}, "tied": {}}
    incomplete = 0
    for rs in by_item.values():
        meta = rs[0]["meta"]
        k, m = meta["correct"], meta["incorrect"]
        if m < 1 or len(rs) != k * m + k * (k - 1) // 2:
            incomplete += 1
            continue
        stats[meta["tie"]][meta["prompt"]] = prompt_stats(rs)
    ref, tied = stats["ref"], stats["tied"]
    terms: dict[str, float | None] = {
        "ref_accuracy": fmean(s[0] for s in ref.values()) if ref else 0.0,
        "tied_accuracy": fmean(s[0] for s in tied.values()) if tied else 0.0,
    }
    both = sorted(set(ref) & set(tied))
    # per paired prompt: tied spread (not None: two correct answers), tied gap, hardest gap
    triples = [(cast(float, tied[p][1]), tied[p][2], min(ref[p][2], tied[p][2])) for p in both]
    terms["correctness_preferred"] = fmean(g > d for d, g, _ in triples) if both else None
    terms["correctness_preferred_hard"] = fmean(h > d for d, _, h in triples) if both else None
    terms["correctness_margin_score"] = (
        fmean(_tanh_ratio(h, d) for d, _, h in triples) if both else None
    )
    values = [terms[name] for name in TIES_WEIGHTS]
    total = (
        None
        if None in values
        else 100 * sum(TIES_WEIGHTS[n] * cast(float, terms[n]) for n in TIES_WEIGHTS)
    )
    return {
        "score": total,
        "terms": terms,
        "prompts": {"ref": len(ref), "tied": len(tied), "paired": len(both),
                    "complete": len(ref) + len(tied), "incomplete": incomplete},
    }  # fmt: skip


def _tanh_ratio(gap: float, spread: float) -> float:
    """``nan_to_num(tanh(gap / spread - 1))`` as numpy computes it, including ``spread == 0``."""
    if spread == 0:
        return 0.0 if gap == 0 else math.copysign(1.0, gap)
    return math.tanh(gap / spread - 1)


def _votes(record: Record) -> dict[str, int]:
    votes = {"A": 0, "B": 0, "none": 0}
    for judgment in record.get("judgments", ()):
        votes[judgment.get("verdict") or "none"] += 1
    return votes


SCORERS: dict[str, Callable[[Sequence[Record], float], dict[str, Any]]] = {
    "rewardbench": rewardbench,
    "rm-bench": rm_bench,
    "rmb": rmb,
    "judgebench": judgebench,
    "rewardbench2": rewardbench2,
}
EXPECTED_PARTS: dict[str, Sequence[str]] = {
    "rewardbench": tuple(SECTIONS),
    "rm-bench": RM_BENCH_DOMAINS,
    "rmb": RMB_SECTIONS,
    "judgebench": JUDGEBENCH_CATEGORIES,
    "rewardbench2": RB2_SUBSETS,
}
# What ``subsets`` and the per-subset health are grouped by.
SUBSET_KEYS: dict[str, Callable[[Record], str]] = {
    "rewardbench": lambda r: r["meta"]["subset"],
    "rm-bench": lambda r: r["meta"]["group"],
    "rmb": lambda r: (
        f"{'Pairwise' if r['meta']['set'] == 'pairwise' else 'BoN'} {r['meta']['goal']}"
    ),
    "judgebench": lambda r: r["meta"]["category"],
    "rewardbench2": lambda r: r["meta"]["subset"],
}


def _parts(benchmark: str, result: Mapping[str, Any]) -> dict[str, float | None]:
    """The values the headline score averages."""
    if benchmark == "rm-bench":
        return {name: d["average"] for name, d in result["domains"].items()}
    return dict(result.get("sections") or result.get("categories") or {})


def consistency(records: Iterable[Record]) -> float | None:
    """The fraction of comparisons judged in both orders whose verdicts agree (``None``: none)."""
    return health.orders_agree_rate(records)


def _style_matrix(records: Sequence[Record], unparsed_score: float) -> dict[str, Any]:
    cells: dict[tuple[int, int], list[float]] = defaultdict(list)
    for r in records:
        cells[r["meta"]["chosen_style"], r["meta"]["rejected_style"]].append(
            outcome(r, unparsed_score)
        )
    size = range(3)
    matrix = [[100 * fmean(cells[i, j]) if cells[i, j] else None for j in size] for i in size]
    hard = _mean(matrix[i][j] for i in size for j in size if i < j)
    normal = _mean(matrix[i][i] for i in size)
    easy = _mean(matrix[i][j] for i in size for j in size if i > j)
    items = len({r["item"] for r in records})
    average = _mean((hard, normal, easy))
    return {"items": items, "matrix": matrix, "hard": hard, "normal": normal, "easy": easy,
            "average": average}  # fmt: skip


def _group(records: Iterable[Record], key: Callable[[Record], str]) -> dict[str, list[Record]]:
    groups: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        groups[key(record)].append(record)
    return dict(groups)


def _category(record: Record) -> str:
    return record["meta"]["category"]


def _percent(records: Sequence[Record], unparsed_score: float) -> float:
    return 100 * fmean(outcome(r, unparsed_score) for r in records)


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return fmean(present) if present else None


def _subsets(
    groups: Mapping[str, Sequence[Record]], accuracy: Mapping[str, float | None]
) -> dict[str, dict[str, Any]]:
    return {
        name: {
            "comparisons": len(groups.get(name, ())),
            "accuracy": accuracy[name],
            "orders_agree": consistency(groups.get(name, ())),
        }
        for name in accuracy
    }
