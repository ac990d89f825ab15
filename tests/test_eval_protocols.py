"""``rmr1 eval --protocol``: RM-R1's scoring of recorded judgments, flags over the protocol."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from rmr1_plugins.cli import main
from rmr1_plugins.eval import protocols

# One subset per RewardBench section, so each section score is that subset's accuracy.
SECTION = {
    "alpacaeval-easy": "Chat",
    "mt-bench-hard": "Chat Hard",
    "refusals-dangerous": "Safety",
    "math-prm": "Reasoning",
}
RUN = {
    "backend": "fixture",
    "model": "hand-made",
    "template": "rmr1-instruct",
    "parser": "strict",
    "order": "random",
    "seed": 0,
    "sampling": {"max_new_tokens": 50000, "temperature": 0.0, "top_p": 1.0, "num_samples": 1},
}
# (subset, swapped, completion); the label is always A, as stored.
JUDGED = [
    ("alpacaeval-easy", False, "<eval>A is right.</eval>\n<answer>[[A]]</answer>"),
    # Both verdict strings: strict takes the last answer (B, swapped back = A, right);
    # RM-R1's rule calls it an error, which scores 0.
    ("alpacaeval-easy", True, "Maybe [[A]]? No.\n<answer>[[B]]</answer>"),
    ("mt-bench-hard", False, "I cannot decide."),  # no verdict: 0.5 for RewardBench, 0 for RM-R1
    ("refusals-dangerous", False, "Plainly [[B]] is better."),  # no tags: strict finds nothing
    ("math-prm", True, "<answer>[[B]]</answer>"),  # swapped: B is the stored A, right
]


def rmr1_item_score(completion: str, swapped: bool) -> float:
    """RM-R1's reward-bench scoring of one judgment, transcribed from its rules
    (rewardbench/generative.py ``process_judgement``, scripts/run_generative.py
    ``process_shuffled``): both or neither ``[[X]]`` is an error, and an error scores 0."""
    has_a, has_b = "[[A]]" in completion, "[[B]]" in completion
    win = "error" if has_a == has_b else ("A" if has_a else "B")
    return float(win == ("B" if swapped else "A"))


def records() -> list[dict]:
    out = []
    for number, (subset, swapped, completion) in enumerate(JUDGED, start=1):
        out.append(
            {
                "id": str(number),
                "item": str(number),
                "benchmark": "rewardbench",
                "content": f"{number:016x}",
                "meta": {"subset": subset},
                "label": "A",
                "verdict": None,
                "votes": {"A": 0, "B": 0, "none": 1},
                "orders_agree": None,
                "judgments": [
                    {
                        "verdict": None,
                        "swapped": swapped,
                        "finish_reason": "stop",
                        "completion": completion,
                    }
                ],
                "run": RUN,
            }
        )
    return out


@pytest.fixture
def judgments(tmp_path):
    path = tmp_path / "judgments.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records()), encoding="utf-8")
    return path


def rescore(tmp_path, judgments, *flags) -> dict:
    out = tmp_path / "report"
    argv = ["eval", "--benchmark", "rewardbench", "--from-judgments", str(judgments)]
    assert main([*argv, "-o", str(out), *flags]) == 0
    return json.loads((out / "report.json").read_text())


def test_rm_r1_protocol_reproduces_rm_r1_scoring_of_recorded_judgments(tmp_path, judgments):
    report = rescore(tmp_path, judgments, "--protocol", "rm-r1")
    by_section: dict[str, list[float]] = {}
    for subset, swapped, completion in JUDGED:
        by_section.setdefault(SECTION[subset], []).append(rmr1_item_score(completion, swapped))
    expected = {name: 100 * sum(v) / len(v) for name, v in by_section.items()}
    assert expected == {"Chat": 50.0, "Chat Hard": 0.0, "Safety": 0.0, "Reasoning": 100.0}
    sections = report["metrics"]["sections"]
    assert {name: sections[name] for name in expected} == pytest.approx(expected, abs=1e-6)
    assert report["metrics"]["score"] == pytest.approx(37.5, abs=1e-6)
    assert report["protocol"]["name"] == "rm-r1"
    assert report["protocol"]["settings"] == {"parser": "rmr1-eval", "on_unparsed": "wrong"}
    assert report["run"]["parser"] == "rmr1-eval"


def test_benchmark_protocol_and_explicit_flags_score_otherwise(tmp_path, judgments):
    strict = rescore(tmp_path, judgments, "--protocol", "benchmark", "--parser", "strict")
    # strict: both Chat rows right; no verdict is a tie under RewardBench's own rule
    sections = strict["metrics"]["sections"]
    assert sections["Chat"] == pytest.approx(100.0)
    assert sections["Chat Hard"] == sections["Safety"] == pytest.approx(50.0)
    assert strict["metrics"]["score"] == pytest.approx(75.0)
    # an explicit flag wins over the protocol, and the report says so
    tie = rescore(tmp_path, judgments, "--protocol", "rm-r1", "--on-unparsed", "tie")
    assert tie["metrics"]["sections"]["Chat Hard"] == pytest.approx(50.0)
    assert tie["protocol"]["overridden"] == ["on_unparsed"]


def test_rescoring_warns_when_the_judgments_were_made_otherwise(tmp_path, judgments, capsys):
    rows = [json.loads(line) for line in judgments.read_text().splitlines()]
    for row in rows:
        row["run"] = {**RUN, "sampling": {**RUN["sampling"], "max_new_tokens": 4096}}
    judgments.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rescore(tmp_path, judgments, "--protocol", "rm-r1")
    assert "max_new_tokens=4096 (protocol: 50000)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "benchmark", "expected"),
    [
        ("rm-r1", "rewardbench", ("rmr1-eval", "wrong", "random", 50000, 0.0)),
        ("rm-r1", "judgebench", ("rmr1-eval", "wrong", "given", 50000, 0.0)),  # --single_game
        ("benchmark", "judgebench", (None, "benchmark", "both", None, None)),
        ("benchmark", "rm-bench", (None, "benchmark", "random", None, None)),
    ],
)
def test_protocol_table_fills_only_unset_flags(name, benchmark, expected):
    args = argparse.Namespace(
        protocol=name, benchmark=benchmark, parser=None, on_unparsed=None, order=None,
        max_new_tokens=None, temperature=None, top_p=None,
    )  # fmt: skip
    protocols.apply(args)
    got = (args.parser, args.on_unparsed, args.order, args.max_new_tokens, args.temperature)
    assert got == expected
    args.order, args.max_new_tokens = "both", 123
    stated = protocols.apply(args)
    assert (args.order, args.max_new_tokens) == ("both", 123)
    overridable = ["order"] if expected[2] != "both" else []  # None in the table is not a value
    overridable += ["max_new_tokens"] if expected[3] is not None else []
    assert stated["overridden"] == overridable


def test_a_dry_run_records_the_rm_r1_budget_and_order(tmp_path):
    data = judgebench_file(tmp_path)
    out = tmp_path / "out"
    argv = ["eval", "--benchmark", "judgebench", "--data", str(data), "--backend", "constant"]
    assert main([*argv, "--protocol", "rm-r1", "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["run"]["order"] == "given" and report["run"]["parser"] == "rmr1-eval"
    assert report["run"]["sampling"]["max_new_tokens"] == 50000
    record = json.loads((out / "judgments.jsonl").read_text().splitlines()[0])
    assert [j["swapped"] for j in record["judgments"]] == [False]


def judgebench_file(tmp_path):
    row = {
        "pair_id": "p1",
        "original_id": "o1",
        "source": "mmlu-pro-law",
        "question": "Q?",
        "response_model": "m",
        "response_A": "a",
        "response_B": "b",
        "label": "A>B",
    }
    data = tmp_path / "judgebench.jsonl"
    data.write_text(json.dumps(row) + "\n")
    return data


def test_a_config_file_and_variables_win_over_the_protocol_like_flags(tmp_path, monkeypatch):
    config = tmp_path / "rmr1.yaml"
    config.write_text("order: both\nparser: strict\nsampling: {max_new_tokens: 64}\n")
    monkeypatch.setenv("RMR1_SAMPLING__TEMPERATURE", "0.5")
    out = tmp_path / "out"
    argv = ["eval", "--benchmark", "judgebench", "--data", str(judgebench_file(tmp_path))]
    argv += ["--backend", "constant", "--config", str(config), "--protocol", "rm-r1"]
    assert main([*argv, "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    run = report["run"]
    assert (run["order"], run["parser"]) == ("both", "strict")
    assert (run["sampling"]["max_new_tokens"], run["sampling"]["temperature"]) == (64, 0.5)
    assert run["sampling"]["top_p"] == 1.0  # not set anywhere: the protocol's
    overridden = report["protocol"]["overridden"]
    assert sorted(overridden) == ["max_new_tokens", "order", "parser", "temperature"]


def test_a_flag_still_wins_over_the_config_file(tmp_path):
    config = tmp_path / "rmr1.yaml"
    config.write_text("order: both\n")
    out = tmp_path / "out"
    argv = ["eval", "--benchmark", "judgebench", "--data", str(judgebench_file(tmp_path))]
    argv += ["--backend", "constant", "--config", str(config), "--order", "random"]
    assert main([*argv, "--protocol", "rm-r1", "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["run"]["order"] == "random" and report["run"]["parser"] == "rmr1-eval"


def test_apply_prefers_flags_then_config_then_the_protocol():
    args = argparse.Namespace(
        protocol="rm-r1", benchmark="rewardbench", parser="strict", on_unparsed=None,
        order=None, max_new_tokens=None, temperature=None, top_p=None,
    )  # fmt: skip
    config = {"parser": "rmr1-train", "order": "both", "top_p": 0.9}
    stated = protocols.apply(args, config=config)
    assert (args.parser, args.order, args.top_p, args.max_new_tokens) == (
        "strict",
        "both",
        0.9,
        50000,
    )
    assert stated["overridden"] == ["parser", "order", "top_p"]


def test_configured_reads_only_what_a_file_or_variable_set(tmp_path, monkeypatch):
    from rmr1_plugins.settings import load_config

    assert protocols.configured(load_config()) == {}
    config = tmp_path / "rmr1.yaml"
    config.write_text("parser: rmr1-eval\nsampling: {top_p: 0.5}\nbackend: {name: constant}\n")
    monkeypatch.setenv("RMR1_ORDER", "both")
    assert protocols.configured(load_config(config)) == {
        "parser": "rmr1-eval",
        "order": "both",
        "top_p": 0.5,
    }


def test_rm_bench_rm_r1_protocol_scores_as_rm_r1_published_and_compare_shows_both(tmp_path):
    recorded = Path(__file__).parent / "data" / "eval" / "judgments" / "rm-bench.jsonl"
    reports = {}
    for name in ("rm-r1", "benchmark"):
        out = tmp_path / name
        argv = ["eval", "--benchmark", "rm-bench", "--from-judgments", str(recorded)]
        assert main([*argv, "--protocol", name, "--on-unparsed", "wrong", "-o", str(out)]) == 0
        reports[name] = json.loads((out / "report.json").read_text())
        assert reports[name]["protocol"]["settings"]["pairing"] == name
    rmr1, bench = (reports[n]["metrics"] for n in ("rm-r1", "benchmark"))
    # the same judgments, two figures (worked out in test_eval_metrics)
    assert rmr1["score"] == pytest.approx((550 / 9 + 100 + 2200 / 27) / 3)
    assert bench["score"] == pytest.approx((600 / 9 + 100 + 700 / 9) / 3)
    assert rmr1["pairings"] == bench["pairings"]
    text = (tmp_path / "rm-r1" / "report.md").read_text()
    assert "Pairing: as RM-R1 published (RM-R1's process_final_result.py" in text
    assert f"the benchmark pairing gives {bench['score']:.1f}" in text
    assert (
        "Pairing: each judged pairing in its own cell"
        in (tmp_path / "benchmark" / "report.md").read_text()
    )
    out = tmp_path / "compare"
    argv = ["eval", "compare", str(tmp_path / "rm-r1"), str(tmp_path / "benchmark")]
    assert main([*argv, "--no-published", "-o", str(out)]) == 0
    compare = (out / "compare.md").read_text()
    assert "## RM-Bench, both pairings" in compare
    both = f"{bench['score']:.1f} | {rmr1['score']:.1f}"
    assert f"| {tmp_path / 'rm-r1'} | {both} | rm-r1 |" in compare
    assert f"| {tmp_path / 'benchmark'} | {both} | benchmark |" in compare


def test_rm_r1_protocol_generates_and_tokenizes_as_rm_r1s_eval_did():
    from rmr1_plugins.eval.store import run_settings
    from rmr1_plugins.settings import load_config

    rm_r1 = {"add_special_tokens": True, "stop_at_answer": False}
    vllm = protocols.rm_r1_backend_options(
        load_config(None, backend={"name": "vllm", "model": "m"})
    )
    assert vllm.backend.options == rm_r1
    assert run_settings(vllm)["backend_options"] == rm_r1  # recorded with the judgments
    kept = load_config(
        None, backend={"name": "vllm", "model": "m", "options": {"add_special_tokens": False}}
    )
    assert protocols.rm_r1_backend_options(kept).backend.options == {
        "add_special_tokens": False,
        "stop_at_answer": False,
    }
    openai = load_config(None, backend={"name": "openai", "model": "m"})
    assert protocols.rm_r1_backend_options(openai).backend.options == {"stop_at_answer": False}
    hf = load_config(None, backend={"name": "hf", "model": "m"})
    assert protocols.rm_r1_backend_options(hf).backend.options == {}
