"""The command line with a real judge: progress per hf sub-batch, and TRL's import warning."""

import json
import sys
import warnings
from pathlib import Path

EXAMPLES = Path(__file__).parents[2] / "examples" / "pairs.jsonl"


def test_score_bar_moves_after_each_hf_sub_batch(smollm2_dir, tmp_path, monkeypatch):
    import tqdm

    from rmr1_plugins.cli import main

    src = EXAMPLES  # three different pairs
    positions = []
    update = tqdm.tqdm.update

    def record(bar, n=1):
        moved = update(bar, n)
        positions.append((bar.desc, bar.n))
        return moved

    monkeypatch.setattr(tqdm.tqdm, "update", record)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    out = tmp_path / "out.jsonl"
    argv = ["score", str(src), "-o", str(out), "--backend", "hf", "--model", str(smollm2_dir)]
    argv += ["--max-new-tokens", "2", "--backend-option", "batch_size=1"]
    assert main(argv) == 0
    # 3 pairs in one --batch-size 64 batch: three model.generate calls, the bar after each
    assert [n for _, n in positions if n] == [1, 2, 3, 3]
    assert {desc for desc, _ in positions} == {"judging"}
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert ids == ["math-1", "chat-1", "multi-1"]


def test_trl_vllm_version_warning_is_filtered():
    from trl.import_utils import is_vllm_available

    with warnings.catch_warnings(record=True) as caught:  # pytest's filters stay in force
        assert is_vllm_available()
    assert not [w for w in caught if "TRL currently supports vLLM" in str(w.message)]
