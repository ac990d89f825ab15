"""Judge health (rmr1_plugins.rewards.health), what reports say was scored, the charts, and
``rmr1 eval compare``."""

import json
from pathlib import Path

import pytest

from rmr1_plugins.cli import main
from rmr1_plugins.eval import metrics, published
from rmr1_plugins.eval.store import read_records
from rmr1_plugins.rewards import health
from rmr1_plugins.schema import Judgment, PairResult

DATA = Path(__file__).parent / "data" / "eval"
JUDGMENTS = DATA / "judgments"
PNG = b"\x89PNG\r\n\x1a\n"


def judgment(verdict, swapped=False, finish="stop"):
    return {"verdict": verdict, "swapped": swapped, "finish_reason": finish, "completion": ""}


def pair(pid, verdict, label, judgments, agree=None):
    return {"id": pid, "verdict": verdict, "label": label, "orders_agree": agree,
            "judgments": judgments, "meta": {}}  # fmt: skip


PAIRS = [
    # both orders, the judge kept picking the same response: consistent, slot A once of two
    pair("p1", "A", "A", [judgment("A"), judgment("A", swapped=True)], agree=True),
    # both orders, the judge picked slot A both times: inconsistent (stored A then B)
    pair("p2", None, "A", [judgment("A"), judgment("B", swapped=True)], agree=False),
    # one order, shown swapped, judge wrote [[A]] (stored B); cut at the token limit
    pair("p3", "B", "A", [judgment("B", swapped=True, finish="length")]),
    # one order, nothing parsed
    pair("p4", None, "A", [judgment(None, finish="length")]),
]
SIZES = {"p1": (10, 4), "p2": (5, 5), "p3": (3, 30), "p4": (8, 2)}


def test_health_definitions_on_hand_built_judgments():
    # shown slots: p1 A, B; p2 A, A; p3 A; p4 none -> 4 of 5 parsed pick slot A
    assert health.slot_a_rate([j for p in PAIRS for j in p["judgments"]]) == pytest.approx(0.8)
    assert health.orders_agree_rate(PAIRS) == 0.5  # p1 agrees, p2 does not
    summary = health.summary(PAIRS, SIZES)
    assert summary["judgments"] == 6 and summary["pairs"] == 4 and summary["both_orders"] == 2
    assert summary["unparsed"] == pytest.approx(1 / 6)
    assert summary["truncated"] == pytest.approx(2 / 6)
    # decided pairs of unequal length: p1 (A, the longer) and p3 (B, the longer): 2 of 2
    assert summary["longer_wins"] == 1.0 and summary["length_decided"] == 2
    # labels (all A) of unequal-length pairs: p1 longer, p3 shorter, p4 longer -> 2 of 3
    assert summary["longer_preferred"] == pytest.approx(2 / 3)


def test_health_reads_scorer_results_too():
    """The same definitions on PairResult objects, as the training integrations hold them."""
    results = [
        PairResult(
            id="x",
            verdict="A",
            votes={"A": 2, "B": 0, "none": 0},
            orders_agree=True,
            label="A",
            judgments=[
                Judgment(verdict="A", completion="", swapped=False, finish_reason="stop"),
                Judgment(verdict="A", completion="", swapped=True, finish_reason="length"),
            ],
        )
    ]
    summary = health.summary(results, {"x": (1, 9)})
    assert summary["slot_a"] == 0.5 and summary["orders_agree"] == 1.0
    assert summary["truncated"] == 0.5 and summary["longer_wins"] == 0.0


def test_nothing_measured_is_none_not_zero():
    assert health.slot_a_rate([]) is None and health.orders_agree_rate(PAIRS[2:]) is None
    assert health.summary([])["unparsed"] is None
    assert health.length_bias(PAIRS)["longer_wins"] is None  # no lengths known


def eval_from_judgments(tmp_path, benchmark, judgments=None, data=None, name="report"):
    out = tmp_path / name
    argv = ["eval", "--benchmark", benchmark, "-o", str(out)]
    argv += ["--from-judgments", str(judgments or JUDGMENTS / f"{benchmark}.jsonl")]
    if data:
        argv += ["--data", str(data)]
    assert main(argv) == 0
    return out, json.loads((out / "report.json").read_text())


def test_report_has_health_overall_and_per_subset(tmp_path):
    out, report = eval_from_judgments(
        tmp_path, "judgebench", data=DATA / "judgebench.jsonl", name="jb"
    )
    records = list(read_records(JUDGMENTS / "judgebench.jsonl").values())
    h = report["metrics"]["health"]
    assert h["overall"]["orders_agree"] == 0.5 == report["metrics"]["judge"]["orders_agree"]
    assert h["overall"]["slot_a"] == health.summary(records)["slot_a"]
    assert h["overall"]["longer_wins"] is not None  # lengths come from --data
    assert list(h["subsets"]) == list(report["metrics"]["subsets"])
    assert h["subsets"]["mmlu-pro"]["pairs"] == 2
    text = (out / "report.md").read_text()
    assert "## Judge health" in text and "| **all** | 6 |" in text
    _, bare = eval_from_judgments(tmp_path, "judgebench", name="bare")
    assert bare["metrics"]["health"]["overall"]["longer_wins"] is None  # no texts, no lengths


def test_headline_names_only_the_domains_scored(tmp_path):
    kept = [r for r in read_records(JUDGMENTS / "rm-bench.jsonl").values()
            if r["meta"]["group"] != "math"]  # fmt: skip
    path = tmp_path / "no-math.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    out, report = eval_from_judgments(tmp_path, "rm-bench", judgments=path)
    assert report["metrics"]["scored"] == ["chat", "safety"]
    assert report["metrics"]["not_scored"] == ["math", "code"]
    text = (out / "report.md").read_text()
    assert "(mean over the chat and safety domains; not scored: math and code; percent)" in text
    assert "chat, math, code and safety" not in text


@pytest.mark.parametrize("benchmark", ["rewardbench", "rmb", "judgebench"])
def test_headlines_of_complete_runs(tmp_path, benchmark):
    result = metrics.score(benchmark, list(read_records(JUDGMENTS / f"{benchmark}.jsonl").values()))
    assert result["not_scored"] == []  # the fixtures cover every part
    assert set(result["scored"]) == set(metrics.EXPECTED_PARTS[benchmark])


def png_size(path):
    """(width, height) from a PNG's header."""
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 5000  # a real picture, not an empty canvas
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_rm_bench_report_draws_the_matrix_heatmap_and_position_bias(tmp_path):
    pytest.importorskip("matplotlib")
    out, _ = eval_from_judgments(
        tmp_path, "rm-bench", data=DATA / "rm-bench_total_dataset.json", name="rmb"
    )
    width, height = png_size(out / "matrix.png")
    assert width > 2 * height  # one heatmap per domain, side by side
    png_size(out / "position_bias.png")
    png_size(out / "report.png")


def test_other_benchmarks_draw_no_matrix(tmp_path):
    pytest.importorskip("matplotlib")
    out, _ = eval_from_judgments(tmp_path, "rmb")
    assert not (out / "matrix.png").exists() and png_size(out / "position_bias.png")


def test_published_numbers_match_the_reference_table():
    assert published.RM_R1["gaotang/RM-R1-Qwen2.5-Instruct-7B"] == {
        "rewardbench": 85.2, "rm-bench": 70.2, "rmb": 66.4
    }  # fmt: skip
    assert published.RM_R1["gaotang/RM-R1-DeepSeek-Distilled-Qwen-32B"]["rmb"] == 69.8
    assert published.checkpoint_of("/ckpt/RM-R1-Qwen2.5-Instruct-14B/") == (
        "gaotang/RM-R1-Qwen2.5-Instruct-14B"
    )
    assert published.checkpoint_of("Qwen/Qwen2.5-7B-Instruct") is None


def test_compare_puts_runs_and_published_numbers_side_by_side(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    mine, _ = eval_from_judgments(tmp_path, "rm-bench", name="mine")
    data = DATA / "rewardbench_filtered.jsonl"
    rb = tmp_path / "rb"
    argv = ["eval", "--benchmark", "rewardbench", "--backend", "constant", "--data", str(data)]
    argv += ["--model", "gaotang/RM-R1-Qwen2.5-Instruct-7B", "-o", str(rb)]
    assert main(argv) == 0
    capsys.readouterr()
    out = tmp_path / "cmp"
    assert main(["eval", "compare", str(mine), str(rb / "report.json"), "-o", str(out)]) == 0
    table = json.loads((out / "compare.json").read_text())
    labels = [row["label"] for row in table["rows"]]
    assert labels[:3] == [
        "hand-designed judgments",
        "gaotang/RM-R1-Qwen2.5-Instruct-7B",
        "gaotang/RM-R1-Qwen2.5-Instruct-7B (published)",  # beside the run of that checkpoint
    ]
    assert len(labels) == 2 + 6 and table["benchmarks"] == ["rewardbench", "rm-bench", "rmb"]
    assert table["rows"][2]["scores"]["rewardbench"] == 85.2
    text = (out / "compare.md").read_text()
    assert text == capsys.readouterr().out
    assert "| *gaotang/RM-R1-Qwen2.5-Instruct-7B (published)* | 85.2 | 70.2 | 66.4 |" in text
    png_size(out / "compare.png")
    alone = tmp_path / "alone"
    assert main(["eval", "compare", str(mine), "--no-published", "-o", str(alone)]) == 0
    assert [r["label"] for r in json.loads((alone / "compare.json").read_text())["rows"]] == [
        "hand-designed judgments"
    ]


def test_compare_and_eval_refuse_bad_input(tmp_path, capsys):
    assert main(["eval", "compare", str(tmp_path / "none"), "-o", str(tmp_path / "o")]) == 2
    assert "cannot read a report" in capsys.readouterr().err
    assert main(["eval", "--data", "x.json", "-o", str(tmp_path / "o")]) == 2
    assert "give --benchmark" in capsys.readouterr().err
