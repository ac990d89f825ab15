"""``rmr1 eval`` end to end with a real judge: SmolLM2-135M-Instruct on the hf backend."""

import json
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).parents[1] / "data" / "eval"


def test_eval_judges_a_tiny_rewardbench_file_and_resumes(smollm2_dir, tmp_path):
    rows = (DATA / "rewardbench_filtered.jsonl").read_text().splitlines()[:2]
    data = tmp_path / "filtered.jsonl"
    data.write_text("\n".join(rows) + "\n")
    out = tmp_path / "report"
    argv = ["eval", "--benchmark", "rewardbench", "--data", str(data), "-o", str(out)]
    argv += ["--backend", "hf", "--model", str(smollm2_dir), "--max-new-tokens", "16"]
    argv += ["--backend-option", "dtype=float32", "--parser", "rmr1-eval"]
    command = [sys.executable, "-m", "rmr1_plugins.cli", *argv]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["counts"]["items"] == report["counts"]["judged"] == 2
    assert report["counts"]["missing"] == 0 and report["run"]["model"] == str(smollm2_dir)
    assert 0 <= report["metrics"]["score"] <= 100
    judged = (out / "judgments.jsonl").read_text()
    for line in judged.splitlines():
        [judgment] = json.loads(line)["judgments"]
        assert judgment["completion"].strip()  # the model really wrote something
        assert judgment["finish_reason"] in ("stop", "length")
    # Run again: everything is judged already, so nothing is appended.
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert (out / "judgments.jsonl").read_text() == judged
    assert json.loads((out / "report.json").read_text())["metrics"] == report["metrics"]
