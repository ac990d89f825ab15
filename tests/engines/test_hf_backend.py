"""The hf backend with real SmolLM2 weights on CPU."""

import json
import subprocess
import sys
from pathlib import Path

from rmr1_plugins import PairwiseExample, SamplingParams, Scorer, get_template

EXAMPLES = Path(__file__).parents[2] / "examples" / "pairs.jsonl"


def test_render_tokenises_with_bos_once(hf_backend):
    tokenizer, _ = hf_backend._load()
    messages = get_template("rmr1-instruct").render(
        PairwiseExample(context=[{"role": "user", "content": "q"}], response_a="a", response_b="b")
    )
    ids = hf_backend.render(messages)
    expected = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert tokenizer.decode(ids) == expected
    start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert ids[0] == start and ids[1] != start
    assert ids.count(start) == 3  # system, user, assistant header: nothing added twice


def test_scorer_judges_real_pairs_in_one_batch(hf_backend):
    rows = [json.loads(line) for line in EXAMPLES.read_text().splitlines()]
    examples = [PairwiseExample.from_row(row) for row in rows]
    scorer = Scorer(hf_backend, sampling=SamplingParams(max_new_tokens=24), order="both")
    results = scorer.score(examples)
    assert len(results) == 3
    for result in results:
        assert len(result.judgments) == 2
        for judgment in result.judgments:
            assert judgment.completion.strip()  # the model really wrote something
            assert judgment.finish_reason in ("stop", "length")
        assert result.verdict in ("A", "B", None)
        assert sum(result.votes.values()) == 2


def test_greedy_generation_is_deterministic_and_batch_independent(hf_backend):
    messages = [{"role": "user", "content": "Say hello."}]
    other = [{"role": "user", "content": "Count from one to twenty, separated by commas."}]
    params = SamplingParams(max_new_tokens=12)
    alone = hf_backend.generate([messages], params)[0][0].text
    batched = hf_backend.generate([other, messages], params)[1][0].text
    assert alone == batched and alone


def test_sampling_returns_n_completions(hf_backend):
    params = SamplingParams(max_new_tokens=8, temperature=1.0, num_samples=3, seed=0)
    [samples] = hf_backend.generate([[{"role": "user", "content": "Pick a colour."}]], params)
    assert len(samples) == 3 and all(s.output_tokens and s.output_tokens <= 8 for s in samples)


def test_cli_score_end_to_end_with_smollm2(smollm2_dir, tmp_path):
    out = tmp_path / "judgments.jsonl"
    argv = ["score", str(EXAMPLES), "-o", str(out), "--backend", "hf", "--model", str(smollm2_dir)]
    argv += ["--max-new-tokens", "16", "--backend-option", "dtype=float32"]
    done = subprocess.run(
        [sys.executable, "-m", "rmr1_plugins.cli", *argv], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in results] == ["math-1", "chat-1", "multi-1"]
    assert all(r["judgments"][0]["completion"] for r in results)
