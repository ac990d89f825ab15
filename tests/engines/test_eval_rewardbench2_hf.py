"""RewardBench 2 end to end with a real judge (SmolLM2-135M-Instruct, hf backend), both orders."""

import json
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).parents[1] / "data" / "eval"


def test_rewardbench2_with_a_real_judge_reports_scores_and_health(smollm2_dir, tmp_path):
    keep = {"11", "ref:2", "tied:2"}  # a best-of-4 row and one Ties prompt (ref + tied)
    rows = [r for r in (DATA / "rewardbench2_test.jsonl").read_text().splitlines()
            if json.loads(r)["id"] in keep]  # fmt: skip
    data = tmp_path / "test.jsonl"
    data.write_text("\n".join(rows) + "\n")
    out = tmp_path / "report"
    argv = ["eval", "--benchmark", "rewardbench2", "--data", str(data), "-o", str(out)]
    argv += ["--backend", "hf", "--model", str(smollm2_dir), "--max-new-tokens", "16"]
    argv += ["--backend-option", "dtype=float32", "--order", "both"]
    done = subprocess.run([sys.executable, "-m", "rmr1_plugins.cli", *argv],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["counts"]["judged"] == report["counts"]["comparisons"] == 3 + 2 + 5
    m = report["metrics"]
    assert m["scored"] == ["Factuality", "Ties"] and 0 <= m["score"] <= 101
    assert m["ties"]["prompts"] == {"ref": 1, "tied": 1, "paired": 1, "complete": 2,
                                    "incomplete": 0}  # fmt: skip
    assert all(v is not None for v in m["ties"]["terms"].values())
    records = [json.loads(line) for line in (out / "judgments.jsonl").read_text().splitlines()]
    judgments = [j for r in records for j in r["judgments"]]
    assert len(judgments) == 20 and all(j["completion"].strip() for j in judgments)
    cut = sum(j["finish_reason"] == "length" for j in judgments)
    overall = m["health"]["overall"]
    assert overall["truncated"] == cut / 20  # 16 tokens: a real, countable number
    # pairs judged in both orders where at least one order reached a verdict (SmolLM2 rarely does)
    decided = sum(r.get("orders_agree") is not None for r in records)
    assert len(records) == 10 and all({j["swapped"] for j in r["judgments"]} == {False, True}
                                      for r in records)  # fmt: skip
    assert overall["both_orders"] == decided
    assert (overall["orders_agree"] is None) == (decided == 0)
    assert set(m["health"]["subsets"]) == {"Factuality", "Ties"}
    assert "## Judge health" in (out / "report.md").read_text()  # charts: tests/test_eval_report.py
