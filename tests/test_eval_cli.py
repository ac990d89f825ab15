"""``rmr1 eval`` end to end with the constant backend: dry runs, resume, reports."""

import json
from pathlib import Path

import pytest

from rmr1_plugins import Scorer
from rmr1_plugins.cli import main
from rmr1_plugins.eval.loaders import load
from rmr1_plugins.eval.metrics import EXAMPLE_COUNTS
from rmr1_plugins.eval.runner import judge, pending
from rmr1_plugins.eval.store import JudgmentFile

DATA = Path(__file__).parent / "data" / "eval"
SMALL = {
    "rewardbench": (DATA / "rewardbench_filtered.jsonl", 13, 13),
    "rm-bench": (DATA / "rm-bench_total_dataset.json", 6, 54),
    "rmb": (DATA / "rmb", 9, 16),
    "judgebench": (DATA / "judgebench.jsonl", 6, 6),
}
# RewardBench's filtered split: every subset's real size (math-prm has 447 rows).
REWARDBENCH_ROWS = {**EXAMPLE_COUNTS, "math-prm": 447}


def run_eval(tmp_path, benchmark, *extra):
    out = tmp_path / f"out-{benchmark}"
    argv = ["eval", "--benchmark", benchmark, "--backend", "constant", "-o", str(out), *extra]
    return main(argv), out


def judgments(out):
    return [json.loads(line) for line in (out / "judgments.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("benchmark", SMALL)
def test_dry_run_counts_every_item_and_writes_the_report(tmp_path, capsys, benchmark):
    data, items, comparisons = SMALL[benchmark]
    code, out = run_eval(tmp_path, benchmark, "--data", str(data))
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["counts"] == {
        "rows": items,
        "items": items,
        "malformed": 0,
        "judged": comparisons,
        "comparisons": comparisons,
        "missing": 0,
    }
    assert report["run"]["backend"] == "constant" and report["metrics"]["score"] is not None
    rows = judgments(out)
    assert len(rows) == comparisons == len({r["id"] for r in rows})
    per_comparison = 2 if benchmark == "judgebench" else 1  # JudgeBench judges both orders
    assert {len(r["judgments"]) for r in rows} == {per_comparison}
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (out / "report.md").read_text()
    assert markdown == capsys.readouterr().out and "| subset | comparisons |" in markdown


def test_full_size_rewardbench_dry_run_reports_all_2985_rows(tmp_path, capsys):
    """A generated file shaped like RewardBench's filtered split (real subset names and sizes)."""
    path = tmp_path / "filtered.jsonl"
    with path.open("w") as handle:
        row_id = 0
        for subset, count in REWARDBENCH_ROWS.items():
            for k in range(count):
                row_id += 1
                row = {"prompt": f"{subset} prompt {k}", "chosen": f"good {k}", "rejected": "bad"}
                row |= {
                    "chosen_model": "m1",
                    "rejected_model": "m2",
                    "subset": subset,
                    "id": row_id,
                }
                handle.write(json.dumps(row) + "\n")
        handle.write('{"prompt": "no answers", "subset": "hep-go", "id": 99999}\n{"oops"\n')
    code, out = run_eval(tmp_path, "rewardbench", "--data", str(path), "--batch-size", "512")
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["counts"] == {
        "rows": 2987,
        "items": 2985,
        "malformed": 2,
        "judged": 2985,
        "comparisons": 2985,
        "missing": 0,
    }
    subsets = report["metrics"]["subsets"]
    assert {name: s["comparisons"] for name, s in subsets.items()} == REWARDBENCH_ROWS
    assert [m["id"] for m in report["malformed"]] == ["99999", None]
    assert report["malformed"][1]["source"] == f"{path}:2987"
    # The constant judge always answers A: right exactly when the seeded coin left chosen in A.
    rows = judgments(out)
    unswapped = [not r["judgments"][0]["swapped"] for r in rows]
    assert 0.45 < sum(unswapped) / len(rows) < 0.55
    assert report["metrics"]["judge"]["comparisons"] == 2985
    err = capsys.readouterr().err
    assert "warning: 2 malformed items left out" in err
    assert "`99999`" in (out / "report.md").read_text()


def test_random_order_is_seeded(tmp_path):
    data = str(DATA / "rm-bench_total_dataset.json")
    swaps = {}
    for seed in ("0", "0", "1"):
        out = tmp_path / f"seed-{seed}-{len(swaps)}"
        argv = ["eval", "--benchmark", "rm-bench", "--data", data, "--backend", "constant"]
        assert main([*argv, "--seed", seed, "-o", str(out)]) == 0
        swaps[out.name] = [r["judgments"][0]["swapped"] for r in judgments(out)]
    first, again, other = swaps.values()
    assert first == again and first != other and 10 < sum(first) < 44


def test_both_orders_report_position_consistency(tmp_path):
    data = str(DATA / "rewardbench_filtered.jsonl")
    code, out = run_eval(tmp_path, "rewardbench", "--data", data, "--order", "both")
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    # The constant judge says A in both orders: the orders never agree, nothing wins.
    assert report["metrics"]["judge"]["orders_agree"] == 0.0
    assert report["metrics"]["subsets"]["math-prm"]["orders_agree"] == 0.0
    assert report["metrics"]["judge"]["unparsed_comparisons"] == 13
    # RewardBench's own rule scores a comparison without a verdict as a tie
    assert report["metrics"]["score"] == 50.0


class FlakyBackend:
    """Wraps a scripted backend and fails on a chosen call, like an interrupted run."""

    def __init__(self, inner, fail_on_call):
        self.inner, self.fail_on_call, self.calls = inner, fail_on_call, 0
        self.name, self.model = inner.name, inner.model

    def generate(self, conversations, params):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt
        return self.inner.generate(conversations, params)

    def close(self):
        pass


def test_interrupted_run_resumes_without_judging_again(tmp_path, scripted):
    loaded = load("rm-bench", [str(DATA / "rm-bench_total_dataset.json")])
    run = {"backend": "scripted", "model": "scripted-model"}
    store = JudgmentFile(tmp_path / "j.jsonl", run, "rm-bench")
    flaky = FlakyBackend(scripted(), fail_on_call=3)
    with pytest.raises(KeyboardInterrupt):
        judge(pending(loaded, store.records), Scorer(flaky, order="random"), store, "rm-bench", 10)
    store.close()  # the interrupted run ends: its lock on the file goes with it
    assert (
        len(JudgmentFile(tmp_path / "j.jsonl", run, "rm-bench").records) == 20
    )  # two batches kept
    backend = scripted()
    resumed = JudgmentFile(tmp_path / "j.jsonl", run, "rm-bench")
    judge(
        pending(loaded, resumed.records), Scorer(backend, order="random"), resumed, "rm-bench", 10
    )
    assert sum(len(batch) for batch in backend.batches) == 54 - 20
    assert set(resumed.records) == {c.id for c in loaded.comparisons}


def test_cli_resume_repairs_a_cut_off_line_and_judges_only_the_rest(tmp_path):
    data = str(DATA / "judgebench.jsonl")
    code, out = run_eval(tmp_path, "judgebench", "--data", data, "--batch-size", "2")
    assert code == 0
    lines = (out / "judgments.jsonl").read_text().splitlines(keepends=True)
    kept = "".join(lines[:3])
    (out / "judgments.jsonl").write_text(kept + lines[3][:40])  # died while writing line 4
    assert run_eval(tmp_path, "judgebench", "--data", data)[0] == 0
    text = (out / "judgments.jsonl").read_text()
    assert text.startswith(kept)  # earlier judgments untouched
    assert sorted(r["id"] for r in judgments(out)) == [f"jb-{k}" for k in range(1, 7)]


def test_a_changed_row_is_judged_again(tmp_path, capsys):
    rows = (DATA / "judgebench.jsonl").read_text().splitlines()
    data = tmp_path / "jb.jsonl"
    data.write_text("\n".join(rows) + "\n")
    assert run_eval(tmp_path, "judgebench", "--data", str(data))[0] == 0
    edited = json.loads(rows[2]) | {"response_B": "15% of 80 is 12, too."}
    data.write_text("\n".join([*rows[:2], json.dumps(edited), *rows[3:]]) + "\n")
    code, out = run_eval(tmp_path, "judgebench", "--data", str(data))
    assert code == 0 and "1 comparisons changed since" in capsys.readouterr().err
    lines = (out / "judgments.jsonl").read_text().splitlines()
    assert len(lines) == 7 and json.loads(lines[-1])["id"] == "jb-3"


def test_a_judgments_file_of_another_benchmark_is_refused(tmp_path, capsys):
    judged = tmp_path / "rm-bench.jsonl"
    judged.write_bytes((DATA / "judgments" / "rm-bench.jsonl").read_bytes())
    code, _ = run_eval(tmp_path, "rmb", "--data", str(DATA / "rmb"), "--judgments", str(judged))
    assert code == 2 and "holds judgments for 'rm-bench', not 'rmb'" in capsys.readouterr().err


def test_resuming_with_other_settings_is_refused(tmp_path, capsys):
    data = str(DATA / "judgebench.jsonl")
    assert run_eval(tmp_path, "judgebench", "--data", data)[0] == 0
    code, _ = run_eval(tmp_path, "judgebench", "--data", data, "--max-new-tokens", "8")
    assert code == 2
    err = capsys.readouterr().err
    assert "holds judgments made with sampling=" in err and "another --judgments file" in err


def test_from_judgments_rejects_records_it_cannot_score(tmp_path, capsys):
    record = json.loads((DATA / "judgments" / "rmb.jsonl").read_text().splitlines()[0])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(record | {"meta": {"set": "pairwise"}}) + "\n")
    assert main(["eval", "--benchmark", "rmb", "--from-judgments", str(bad)]) == 2
    assert "record 'bon/203/loser0': field 'meta' lacks category, goal" in capsys.readouterr().err
    bad.write_text(json.dumps({"id": "x", "verdict": "A"}) + "\n" + json.dumps(record) + "\n")
    assert main(["eval", "--benchmark", "rmb", "--from-judgments", str(bad)]) == 2
    assert "bad.jsonl, line 1: not a judgment record (needs benchmark" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--benchmark", "rmb"], "give --data"),
        (["--benchmark", "rmb", "--data", "missing.json"], "error: missing.json: no such file"),
        (["--benchmark", "rmb", "--data", "x", "--batch-size", "0"], "--batch-size"),
        (["--benchmark", "rmb", "--from-judgments", "nope.jsonl"], "nope.jsonl: cannot read"),
        (
            ["--benchmark", "rmb", "--from-judgments", str(DATA / "judgments" / "rm-bench.jsonl")],
            "holds judgments for ['rm-bench']",
        ),
    ],
)
def test_bad_invocations_exit_2(tmp_path, capsys, argv, message):
    assert main(["eval", *argv, "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
