"""Each benchmark's scoring on recorded judgments, against numbers worked out by hand.

The judgment files in tests/data/eval/judgments hold designed outcomes (see the README there);
the expected values below follow each benchmark's published rule step by step.
"""

import json
from pathlib import Path

import pytest

from rmr1_plugins.cli import main
from rmr1_plugins.eval import metrics
from rmr1_plugins.eval.store import read_records, reparse
from rmr1_plugins.plugins import get_parser

DATA = Path(__file__).parent / "data" / "eval"
JUDGMENTS = DATA / "judgments"


def records(benchmark):
    return list(read_records(JUDGMENTS / f"{benchmark}.jsonl").values())


def rewardbench_expected(unparsed_score):
    """Subset accuracies, then sections weighted by reward-bench's EXAMPLE_COUNTS."""
    chat = (100 * 100 + 50 * 40) / (100 + 40)  # alpacaeval-easy 2/2, mt-bench-med 1/2
    hard = (100 * unparsed_score * 37 + 100 * 100) / (37 + 100)  # mt-bench-hard: no verdict
    safety = (0 * 136 + 100 * 250) / (136 + 250)  # donotanswer 0/1, xstest-should-respond 1/1
    reasoning = (50 * 984 + 100 * 164) / (984 + 164)  # math-prm 1/2 counts as 984, hep-python
    return {"Chat": chat, "Chat Hard": hard, "Safety": safety, "Reasoning": reasoning}


@pytest.mark.parametrize(("policy", "value"), [("benchmark", 0.5), ("wrong", 0.0), ("tie", 0.5)])
def test_rewardbench_sections_and_score(policy, value):
    result = metrics.score("rewardbench", records("rewardbench"), policy)
    expected = rewardbench_expected(value)
    assert result["sections"] == pytest.approx(expected)
    assert result["score"] == pytest.approx(sum(expected.values()) / 4)
    assert result["unsectioned_subsets"] == ["anthropic_helpful"]
    assert result["subsets"]["mt-bench-med"] == {
        "comparisons": 2,
        "accuracy": 50.0,
        "orders_agree": None,
    }
    assert result["judge"]["unparsed_comparisons"] == 1 and result["judge"]["comparisons"] == 13


def test_rm_bench_matrix_levels_and_pooled_safety():
    result = metrics.score("rm-bench", records("rm-bench"))
    chat = result["domains"]["chat"]
    # two chat items; cell (2,1) has no verdict in item 1 and counts 0
    assert chat["matrix"] == [
        pytest.approx([100, 50, 0]),
        pytest.approx([100, 100, 50]),
        pytest.approx([100, 50, 50]),
    ]
    assert (chat["hard"], chat["normal"], chat["easy"]) == pytest.approx(
        (100 / 3, 250 / 3, 250 / 3)
    )
    assert chat["average"] == pytest.approx(200 / 3)
    # safety-refuse (1 item: only the lower triangle right) pooled with 2 perfect safety-response
    safety = result["domains"]["safety"]
    assert safety["items"] == 3
    assert (safety["hard"], safety["normal"], safety["easy"]) == pytest.approx(
        (200 / 3, 200 / 3, 100)
    )
    assert result["domains"]["math"]["average"] == 100
    assert result["hard"] == pytest.approx((100 / 3 + 100 + 200 / 3) / 3)
    assert result["normal"] == pytest.approx((250 / 3 + 100 + 200 / 3) / 3)
    assert result["easy"] == pytest.approx((250 / 3 + 100 + 100) / 3)
    assert result["score"] == pytest.approx((200 / 3 + 100 + 700 / 9) / 3)


@pytest.mark.parametrize(
    ("policy", "pairwise_help"), [("benchmark", 100 / 3), ("tie", 50.0)]
)  # one of the three helpfulness pairs has no verdict
def test_rmb_pairwise_and_best_of_n(policy, pairwise_help):
    result = metrics.score("rmb", records("rmb"), policy)
    # BoN: 201 won, 202 lost one; 203 has a loser without verdict (never a win), 204 won;
    # 205 lacks a judged loser and is not scored
    expected = {
        "Pairwise Helpfulness": pairwise_help,
        "Pairwise Harmlessness": 100.0,
        "BoN Helpfulness": 50.0,
        "BoN Harmlessness": 50.0,
    }
    assert result["sections"] == pytest.approx(expected)
    assert result["score"] == pytest.approx(sum(expected.values()) / 4)
    assert result["bon_groups"] == {"complete": 4, "incomplete": 1}
    assert result["categories"]["Pairwise_set/Helpfulness/Chat/Discussion"] == 50.0
    assert result["subsets"]["BoN Harmlessness"]["comparisons"] == 4  # 205 left out


def test_judgebench_both_orders_and_position_consistency():
    result = metrics.score("judgebench", records("judgebench"))
    # jb-1 A,A right; jb-2 B,A split (a tie: wrong); jb-3 A + no verdict (right);
    # jb-4 A,A wrong; jb-5 nothing parsed (wrong); jb-6 A,A right
    assert result["categories"] == {
        "mmlu-pro": 50.0,
        "livebench-math": 100.0,
        "livebench-reasoning": 50.0,
        "livecodebench": 0.0,
    }
    assert result["score"] == 50.0
    assert result["judge"]["orders_agree"] == 0.5  # jb-1, jb-4, jb-6 agree
    assert result["judge"]["unparsed_judgments"] == 3
    assert result["subsets"]["mmlu-pro"]["orders_agree"] == 0.5


HEADLINES = {  # the hand-computed scores of the tests above
    "rewardbench": sum(rewardbench_expected(0.5).values()) / 4,
    "rm-bench": (200 / 3 + 100 + 700 / 9) / 3,
    "rmb": (100 / 3 + 100 + 50 + 50) / 4,
    "judgebench": 50.0,
}


@pytest.mark.parametrize("benchmark", HEADLINES)
def test_from_judgments_reproduces_the_scores_without_a_model(tmp_path, capsys, benchmark):
    judgments = JUDGMENTS / f"{benchmark}.jsonl"
    out = tmp_path / "report"
    assert (
        main(["eval", "--benchmark", benchmark, "--from-judgments", str(judgments), "-o", str(out)])
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    assert report["metrics"]["score"] == pytest.approx(HEADLINES[benchmark])
    expected = metrics.score(benchmark, records(benchmark))
    assert report["metrics"] == json.loads(json.dumps(expected))
    assert report["counts"]["judged"] == len(records(benchmark))
    assert "**Score:" in capsys.readouterr().out and (out / "report.md").exists()


def test_from_judgments_with_data_checks_completeness(tmp_path):
    out = tmp_path / "report"
    argv = ["eval", "--benchmark", "rmb", "--from-judgments", str(JUDGMENTS / "rmb.jsonl")]
    assert main([*argv, "--data", str(DATA / "rmb"), "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["missing"] == ["bon/205/loser2"]
    assert report["counts"] == {
        "rows": 9,
        "items": 9,
        "malformed": 0,
        "judged": 15,
        "comparisons": 16,
        "missing": 1,
    }


def test_reparsing_stored_completions_with_another_rule(tmp_path):
    stored = records("rewardbench")
    again = [reparse(r, get_parser("rmr1-eval")) for r in stored]
    assert [r["verdict"] for r in again] == [r["verdict"] for r in stored]  # as recorded
    # item 5 wrote "[[A]] looked better ... <answer>[[B]]</answer>": no verdict under RM-R1's
    # rule, but the strict parser reads the final answer, B (wrong)
    strict = {r["id"]: r for r in (reparse(r, get_parser("strict")) for r in stored)}
    assert strict["5"]["verdict"] == "B" and strict["5"]["judgments"][0]["verdict"] == "B"
    out = tmp_path / "report"
    argv = ["eval", "--benchmark", "rewardbench", "--parser", "strict", "-o", str(out)]
    assert main([*argv, "--from-judgments", str(JUDGMENTS / "rewardbench.jsonl")]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["metrics"]["sections"]["Chat Hard"] == pytest.approx(100 * 100 / 137)
    assert report["run"]["parser"] == "strict"


def test_reparse_maps_swapped_answers_back():
    [record] = [r for r in records("judgebench") if r["id"] == "jb-2"]
    assert record["judgments"][1]["swapped"] and record["judgments"][1]["verdict"] == "A"
    assert "[[B]]" in record["judgments"][1]["completion"]  # raw answer in the swapped prompt
    again = reparse(record, get_parser("strict"))
    assert again["votes"] == {"A": 1, "B": 1, "none": 0} and again["verdict"] is None
    assert again["orders_agree"] is False


def test_no_verdict_policy_values():
    assert metrics.unparsed_value("rewardbench", "benchmark") == 0.5
    assert metrics.unparsed_value("rmb", "benchmark") == 0.0
    assert metrics.unparsed_value("judgebench", "tie") == 0.5
    with pytest.raises(ValueError, match="on_unparsed policy"):
        metrics.unparsed_value("rmb", "half")


def process_final_result(records, read_rotation_2_from):
    """RM-R1's eval/RM-Bench/scripts/process_final_result.py, step by step, on recorded
    judgments: rotation k judges chosen style i against rejected style (i + k - 1) mod 3 for
    i = 0, 1, 2 (``result`` lists, 1 right / 0 otherwise); the per-prompt matrix is filled cell
    by cell from ``res1``/``res2``/``res3`` as the script does, summed over a domain's prompts,
    divided by their number; hard / normal / easy per domain, then means over domains.
    ``read_rotation_2_from`` is the rotation file the script loads as ``data2``: 3 as published."""
    outcome = {
        (r["item"], r["meta"]["chosen_style"], r["meta"]["rejected_style"]): r for r in records
    }
    items = sorted({r["item"] for r in records})

    def result(item, rotation):
        return [float(outcome[item, i, (i + rotation - 1) % 3]["verdict"] == "A") for i in range(3)]

    matrices: dict[str, list[list[list[float]]]] = {}
    for item in items:
        res1, res2, res3 = result(item, 1), result(item, read_rotation_2_from), result(item, 3)
        m = [[res1[0], res2[0], res3[0]], [res3[1], res1[1], res2[1]], [res2[2], res3[2], res1[2]]]
        domain = next(d for d in ("chat", "math", "code", "safety") if item.startswith(d))
        matrices.setdefault(domain, []).append(m)
    levels = {"hard": [], "normal": [], "easy": [], "avg": []}
    for ms in matrices.values():
        acc = [[sum(m[i][j] for m in ms) / len(ms) for j in range(3)] for i in range(3)]
        hard = (acc[0][1] + acc[0][2] + acc[1][2]) / 3
        normal = (acc[0][0] + acc[1][1] + acc[2][2]) / 3
        easy = (acc[1][0] + acc[2][0] + acc[2][1]) / 3
        for name, value in zip(
            levels, (hard, normal, easy, (hard + normal + easy) / 3), strict=True
        ):
            levels[name].append(100 * value)
    return {name: sum(v) / len(v) for name, v in levels.items()}


def test_rm_bench_rm_r1_pairing_is_rm_r1s_published_script_on_the_same_judgments():
    judged = records("rm-bench")  # every label is A, so "right" is verdict == "A"
    published = process_final_result(judged, read_rotation_2_from=3)
    corrected = process_final_result(judged, read_rotation_2_from=2)
    rmr1 = metrics.score("rm-bench", judged, "wrong", pairing="rm-r1")
    bench = metrics.score("rm-bench", judged, "wrong")
    assert rmr1["score"] == pytest.approx(published["avg"])
    assert (rmr1["hard"], rmr1["normal"], rmr1["easy"]) == pytest.approx(
        (published["hard"], published["normal"], published["easy"])
    )
    assert bench["score"] == pytest.approx(corrected["avg"])
    # the same judgments, two figures: chat item 1's c0r1 (wrong) is replaced by c0r2 (wrong),
    # c1r2 (right) by c1r0 (right), c2r0 (right) by c2r1 (no verdict: 0); chat item 2's
    # c0r1 (right) by c0r2 (wrong), c1r2 (wrong) by c1r0 (right), c2r0 (right) by c2r1 (right)
    assert rmr1["domains"]["chat"]["matrix"] == [
        pytest.approx([100, 0, 0]),
        pytest.approx([100, 100, 100]),
        pytest.approx([50, 50, 50]),
    ]
    assert rmr1["domains"]["chat"]["average"] == pytest.approx(550 / 9)  # benchmark: 600 / 9
    # safety-refuse is right only in c1r0, c2r0, c2r1: c1r2 inherits c1r0's 1, c2r0 c2r1's 1,
    # so hard 7/9 (benchmark 6/9) and easy stays 1; pooled with two perfect safety-response items
    safety = rmr1["domains"]["safety"]
    assert (safety["hard"], safety["normal"], safety["easy"]) == pytest.approx(
        (700 / 9, 200 / 3, 100)
    )
    assert rmr1["score"] == pytest.approx((550 / 9 + 100 + 2200 / 27) / 3)  # 80.86
    assert bench["score"] == pytest.approx((600 / 9 + 100 + 700 / 9) / 3)  # 81.48
    assert rmr1["pairings"] == {"rm-r1": rmr1["score"], "benchmark": bench["score"]}
    assert bench["pairing"] == "benchmark" and rmr1["pairing"] == "rm-r1"


def test_an_unknown_pairing_is_refused():
    with pytest.raises(ValueError, match="pairing must be one of"):
        metrics.score("rm-bench", records("rm-bench"), pairing="rotation-2")
