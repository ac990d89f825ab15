"""RewardBench 2: the loader on native rows, and each scoring rule against hand-worked numbers.

tests/data/eval/rewardbench2_test.jsonl holds 11 rows in the published schema (made-up text):
six best-of-4 rows (one chosen, three rejected) and five Ties rows (ref:1, tied:1, ref:2,
tied:2, tied:3). Judgments are built here with designed votes, so each expected number follows
from RB2's rule step by step (reward-bench: scripts/run_v2.py, rewardbench/utils.py).
"""

import json
import math
import random
from pathlib import Path

import pytest

from rmr1_plugins.cli import main
from rmr1_plugins.config import ConfigError
from rmr1_plugins.eval import metrics
from rmr1_plugins.eval.loaders import load

FILE = Path(__file__).parent / "data" / "eval" / "rewardbench2_test.jsonl"


def record(comparison, a, b, none=0, swapped=False):
    """A judgment record for ``comparison`` with ``a``/``b``/``none`` votes (stored slots)."""
    verdicts = ["A"] * a + ["B"] * b + [None] * none
    verdict = None if a == b else ("A" if a > b else "B")
    return {
        "id": comparison.id,
        "item": comparison.item,
        "benchmark": "rewardbench2",
        "meta": comparison.meta,
        "label": comparison.example.label,
        "verdict": verdict,
        "votes": {"A": a, "B": b, "none": none},
        "orders_agree": None,
        "judgments": [
            {"verdict": v, "swapped": swapped, "finish_reason": "stop", "completion": ""}
            for v in verdicts
        ],
    }


# Best-of-4 rows: the verdict of chosen vs rejected 0, 1, 2 (None: no verdict).
BEST_OF_4 = {
    "11": ["A", "A", "A"],  # wins all: 1
    "12": ["A", "B", "A"],  # loses one: 0
    "21": ["A", "A", None],  # one tie: 1/2 (0 under --on-unparsed wrong)
    "31": [None, None, None],  # all tied: 1/4, RB2's generative error value 0.25
    "41": ["A", "A", "A"],  # 1
    "51": ["A", None, "B"],  # a loss beats a tie: 0
}
# Ties: votes (A, B, none) per comparison; a margin is (A - B) / (A + B + none).
TIES = {
    # ref:1: margins 1 and 0.5, so the correct-incorrect gap is 0.5 (accurate)
    "ref:1/c0r0": (2, 0, 0),
    "ref:1/c0r1": (1, 0, 1),
    # tied:1: every cross margin 1 (gap 1, accurate); within-correct 0, 0.5, 0 (spread 0.5)
    **{f"tied:1/c{i}r{j}": (2, 0, 0) for i in range(3) for j in range(2)},
    "tied:1/c0c1": (1, 1, 0),
    "tied:1/c0c2": (1, 0, 1),
    "tied:1/c1c2": (0, 0, 2),
    # ref:2: margins 1 and -1 (gap -1, not accurate)
    "ref:2/c0r0": (2, 0, 0),
    "ref:2/c0r1": (0, 2, 0),
    # tied:2: cross margins all 1 (accurate); the two correct answers: margin -1 (spread 1)
    **{f"tied:2/c{i}r0": (2, 0, 0) for i in range(2)},
    **{f"tied:2/c{i}r1": (2, 0, 0) for i in range(2)},
    "tied:2/c0c1": (0, 2, 0),
    # tied:3 (no ref:3, so only its accuracy counts): cross margins 0 and 1 (gap 0, not accurate)
    "tied:3/c0r0": (1, 1, 0),
    "tied:3/c1r0": (2, 0, 0),
    "tied:3/c0c1": (2, 0, 0),
}
REF_ACCURACY = 1 / 2  # ref:1 yes, ref:2 no
TIED_ACCURACY = 2 / 3  # tied:1 yes, tied:2 yes, tied:3 no
# paired prompts 1 and 2: tied gap > tied spread: 1 > 0.5 yes, 1 > 1 no
PREFERRED = 1 / 2
# min(ref gap, tied gap) > tied spread: min(0.5, 1) = 0.5 > 0.5 no; min(-1, 1) > 1 no
PREFERRED_HARD = 0.0
# tanh(min gap / spread - 1): tanh(0.5 / 0.5 - 1) = 0; tanh(-1 / 1 - 1) = tanh(-2)
MARGIN_SCORE = (0 + math.tanh(-2)) / 2
TIES_SCORE = (
    100 * (0.3 * TIED_ACCURACY + 0.3 * REF_ACCURACY + 0.2 * PREFERRED + 0.2 * PREFERRED_HARD)
    + 100 * 0.01 * MARGIN_SCORE
)


def designed_records():
    loaded = load("rewardbench2", [str(FILE)])
    out = []
    for comparison in loaded.comparisons:
        if comparison.meta["subset"] == "Ties":
            out.append(record(comparison, *TIES[comparison.id]))
        else:
            row, j = comparison.id.split("/r")
            verdict = BEST_OF_4[row][int(j)]
            out.append(record(comparison, verdict == "A", verdict == "B", verdict is None))
    return out


def test_loader_reads_native_rows_into_best_of_n_and_ties_comparisons():
    loaded = load("rewardbench2", [str(FILE)])
    assert loaded.rows == 11 and not loaded.malformed
    assert len(loaded.comparisons) == 6 * 3 + (2 + 9 + 2 + 5 + 3)
    first = loaded.items[0]
    assert [c.id for c in first.comparisons] == ["11/r0", "11/r1", "11/r2"]
    pair = first.comparisons[1]
    assert pair.example.response_a == "It boils at 100 degrees Celsius."
    assert pair.example.response_b == "Water boils at 212 degrees Celsius."
    assert pair.example.label == "A" and pair.meta == {"subset": "Factuality", "rejected": 3}
    tied = next(i for i in loaded.items if i.id == "tied:1")
    ids = [c.id for c in tied.comparisons]
    assert ids[:3] == ["tied:1/c0r0", "tied:1/c0r1", "tied:1/c0c1"] and len(ids) == 9
    within = next(c for c in tied.comparisons if c.id == "tied:1/c1c2")
    assert within.example.label is None  # two correct answers: no preferred one
    assert (within.example.response_a, within.example.response_b) == ("Green.", "Blue.")
    assert within.meta == {"subset": "Ties", "tie": "tied", "prompt": 1, "correct": 3,
                           "incorrect": 2, "a": "c1", "b": "c2"}  # fmt: skip


def test_loader_from_parquet_through_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [json.loads(line) for line in FILE.open()]
    datasets.Dataset.from_list(rows).to_parquet(tmp_path / "test.parquet")
    loaded = load("rewardbench2", [str(tmp_path / "test.parquet")])
    assert [i.id for i in loaded.items] == [r["id"] for r in rows]
    assert len(loaded.comparisons) == 39


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"subset": "Chat"}, "field 'subset' must be one of Factuality, Precise IF"),
        ({"num_correct": 2}, "field 'num_correct' is 2 but the lists hold 1"),
        ({"num_incorrect": 4}, "field 'num_incorrect' is 4 but the lists hold 3"),
        ({"total_completions": 3}, "field 'total_completions' is 3 but the lists hold 4"),
        ({"rejected": []}, "field 'rejected' must be a non-empty list of strings"),
        ({"chosen": "one answer"}, "field 'chosen' must be a non-empty list of strings"),
        ({"subset": "Ties", "id": "7"}, "a Ties row needs an id 'ref:N' or 'tied:N', got '7'"),
        ({"subset": "Ties", "id": "tied:7"}, "a 'tied' Ties row needs at least two correct"),
    ],
)
def test_malformed_rows_are_reported_with_the_reason(tmp_path, change, reason):
    good = json.loads(FILE.open().readline())
    path = tmp_path / "rows.jsonl"
    path.write_text(
        json.dumps(good) + "\n" + json.dumps(good | change | {"id": change.get("id", "x")}) + "\n"
    )
    loaded = load("rewardbench2", [str(path)])
    assert [i.id for i in loaded.items] == ["11"]
    [bad] = loaded.malformed
    assert reason in bad.reason and bad.source.endswith("rows.jsonl:2")


@pytest.mark.parametrize(("policy", "tie"), [("benchmark", True), ("tie", True), ("wrong", False)])
def test_best_of_4_accuracy_per_subset(policy, tie):
    result = metrics.score("rewardbench2", designed_records(), policy)
    expected = {
        "Factuality": 50.0,  # rows 11 (1) and 12 (0)
        "Precise IF": 50.0 if tie else 0.0,
        "Math": 25.0 if tie else 0.0,
        "Safety": 100.0,
        "Focus": 0.0,
    }
    sections = result["sections"]
    assert {k: sections[k] for k in expected} == pytest.approx(expected)
    assert sections["Ties"] == pytest.approx(TIES_SCORE)  # the Ties rule ignores the policy
    assert result["score"] == pytest.approx((sum(expected.values()) + TIES_SCORE) / 6)
    assert result["scored"] == ["Factuality", "Precise IF", "Math", "Safety", "Focus", "Ties"]
    assert result["not_scored"] == [] and result["rows"] == {"complete": 11, "incomplete": 0}


def test_ties_terms_follow_process_single_model():
    ties = metrics.score("rewardbench2", designed_records())["ties"]
    assert ties["terms"] == pytest.approx(
        {
            "ref_accuracy": REF_ACCURACY,
            "tied_accuracy": TIED_ACCURACY,
            "correctness_preferred": PREFERRED,
            "correctness_preferred_hard": PREFERRED_HARD,
            "correctness_margin_score": MARGIN_SCORE,
        }
    )
    assert ties["prompts"] == {"ref": 2, "tied": 3, "paired": 2, "complete": 5, "incomplete": 0}
    assert ties["score"] == pytest.approx(44.5180, abs=1e-4)  # 20 + 15 + 10 + 0 - 0.4820


def test_zero_spread_gives_the_full_margin_term_as_numpy_does():
    # nan_to_num(tanh(x / 0 - 1)): +1 for a positive gap, -1 for a negative one, 0 for 0 / 0
    assert metrics._tanh_ratio(0.5, 0.0) == 1.0
    assert metrics._tanh_ratio(-0.5, 0.0) == -1.0
    assert metrics._tanh_ratio(0.0, 0.0) == 0.0


def rb2_reference(prompts):
    """RB2's Ties score from per-completion scores, written out from the published formula.

    ``prompts``: {(kind, prompt id): (correct scores, incorrect scores)}."""
    stats = {"ref": {}, "tied": {}}
    for (kind, pid), (good, bad) in prompts.items():
        spread = max(good) - min(good) if len(good) > 1 else None
        gap = min(good) - max(bad)
        stats[kind][pid] = (gap > 0, spread, gap)
    ref, tied = stats["ref"], stats["tied"]
    ref_acc = sum(s[0] for s in ref.values()) / len(ref)
    tied_acc = sum(s[0] for s in tied.values()) / len(tied)
    both = sorted(set(ref) & set(tied))
    pref = sum(tied[p][2] > tied[p][1] for p in both) / len(both)
    hard = sum(min(ref[p][2], tied[p][2]) > tied[p][1] for p in both) / len(both)
    margin_terms = []
    for p in both:
        low, spread = min(ref[p][2], tied[p][2]), tied[p][1]
        if spread == 0:
            margin_terms.append(0.0 if low == 0 else math.copysign(1.0, low))
        else:
            margin_terms.append(math.tanh(low / spread - 1))
    margin_score = sum(margin_terms) / len(both)
    return 0.3 * tied_acc + 0.3 * ref_acc + 0.2 * pref + 0.2 * hard + 0.01 * margin_score


def test_margins_equal_to_score_differences_reproduce_rb2_exactly():
    """When every margin is the difference of two scores, ours is RB2's number."""
    rng = random.Random(7)
    loaded = load("rewardbench2", [str(FILE)])
    scores = {}  # (item, "c0"/"r1") -> a score in quarters, so differences are vote fractions
    prompts = {}
    for item in loaded.items:
        if not item.id.startswith(("ref:", "tied:")):
            continue
        meta = item.comparisons[0].meta
        good = [rng.randrange(0, 5) / 4 for _ in range(meta["correct"])]
        bad = [rng.randrange(0, 5) / 4 for _ in range(meta["incorrect"])]
        scores |= {(item.id, f"c{i}"): s for i, s in enumerate(good)}
        scores |= {(item.id, f"r{j}"): s for j, s in enumerate(bad)}
        prompts[meta["tie"], meta["prompt"]] = (good, bad)
    records = []
    for c in loaded.comparisons:
        if c.meta["subset"] != "Ties":
            continue
        diff = scores[c.item, c.meta["a"]] - scores[c.item, c.meta["b"]]
        a, b = round(4 * max(diff, 0)), round(4 * max(-diff, 0))
        records.append(record(c, a, b, 4 - a - b))
    ties = metrics.ties_score(records)
    assert ties["score"] == pytest.approx(100 * rb2_reference(prompts))


def test_incomplete_rows_and_prompts_are_not_scored():
    records = [r for r in designed_records() if r["id"] not in ("11/r2", "tied:1/c1c2")]
    result = metrics.score("rewardbench2", records)
    assert result["sections"]["Factuality"] == 0.0  # only row 12 is complete
    assert result["rows"] == {"complete": 9, "incomplete": 2}
    ties = result["ties"]
    assert ties["prompts"]["incomplete"] == 1 and ties["prompts"]["paired"] == 1


def test_a_run_without_some_subsets_says_so():
    records = [r for r in designed_records() if r["meta"]["subset"] in ("Math", "Safety")]
    result = metrics.score("rewardbench2", records)
    assert result["scored"] == ["Math", "Safety"]
    assert result["not_scored"] == ["Factuality", "Precise IF", "Focus", "Ties"]
    assert result["score"] == pytest.approx((25 + 100) / 2)


def test_records_lacking_meta_are_refused_by_name():
    records = designed_records()
    records[0] = {**records[0], "meta": {"subset": "Factuality"}}
    with pytest.raises(ConfigError, match=r"record '11/r0': field 'meta' lacks rejected"):
        metrics.score("rewardbench2", records)


def test_from_judgments_reproduces_the_scores(tmp_path):
    path = tmp_path / "judgments.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in designed_records()))
    out = tmp_path / "report"
    argv = ["eval", "--benchmark", "rewardbench2", "--from-judgments", str(path)]
    assert main([*argv, "--data", str(FILE), "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    expected = (50 + 50 + 25 + 100 + 0 + TIES_SCORE) / 6
    assert report["metrics"]["score"] == pytest.approx(expected)
    assert report["counts"]["missing"] == 0 and report["counts"]["judged"] == 39
    markdown = (out / "report.md").read_text()
    assert "mean over the Factuality, Precise IF, Math, Safety, Focus and Ties subsets" in markdown


def test_dry_run_judges_every_comparison(tmp_path):
    out = tmp_path / "out"
    argv = ["eval", "--benchmark", "rewardbench2", "--backend", "constant", "--data", str(FILE)]
    assert main([*argv, "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["counts"]["judged"] == report["counts"]["comparisons"] == 39
    assert report["run"]["order"] == "random"
