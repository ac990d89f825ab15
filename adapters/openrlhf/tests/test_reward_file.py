"""The reward file's contract, without OpenRLHF: shapes, configuration, threads, bad input."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rmr1_openrlhf import reward_file_path
from rmr1_openrlhf.__main__ import main
from rmr1_openrlhf.reward import get_runtime, reward_func

from rmr1_plugins.rewards.health import METRICS
from rmr1_plugins.rewards.metrics import KEYS, sample_metrics
from rmr1_plugins.testing.judges import VotesJudge

PROMPT = "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
HEALTH_KEYS = {f"rmr1_health/{name}" for name in METRICS}
LOG_KEYS = set(KEYS) - HEALTH_KEYS  # the metrics contract

# One reward: section with the keys of every integration, shared by the three adapters' tests.
SHARED = (Path(__file__).parents[3] / "tests" / "data" / "shared_reward_config.yaml").read_text()


CONSTANT_A = "backend:\n  name: constant\n  options: {completion: '<answer>[[A]]</answer>'}\n"


@pytest.fixture
def constant_judge(configure):
    configure(CONSTANT_A)


def test_path_names_a_file_openrlhf_can_load(capsys):
    assert main(["path"]) == 0
    path = capsys.readouterr().out.strip()
    assert path == str(reward_file_path()) and path.endswith("reward_func.py")
    spec = importlib.util.spec_from_file_location("reward_func", path)  # what OpenRLHF does
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.reward_func is reward_func
    done = subprocess.run(
        [sys.executable, "-m", "rmr1_openrlhf", "path"], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.strip() == path


def test_one_sample_gives_tensors_of_length_one(configure):
    configure(CONSTANT_A)
    result = reward_func([PROMPT + "4<|im_end|>"], [PROMPT], ["four"])
    assert set(result) == {"rewards", "scores", "extra_logs"}
    assert result["rewards"].dtype == torch.float32 and result["rewards"].tolist() == [1.0]
    assert result["scores"].tolist() == [1.0]
    assert list(result["extra_logs"]) == list(KEYS)
    judged = sample_metrics(reference=True, group=1, judgments=1)  # one judgment vs the reference
    assert all(result["extra_logs"][key].tolist() == [judged[key]] for key in LOG_KEYS)
    assert get_runtime().scorer.neutralize_markup is True  # on by default for training


def test_judge_health_in_extra_logs_for_an_always_a_judge(configure, tmp_path):
    """Slot-A rate 1 and, with both orders, no agreement; the same keys on a fallback sample;
    the order flips go to the hard-pairs file."""
    hard = tmp_path / "hard.jsonl"
    configure(CONSTANT_A + f"order: both\nreward: {{hard_pairs: {{path: '{hard}'}}}}\n")
    result = reward_func([PROMPT + "four<|im_end|>", PROMPT + "x"], [PROMPT, PROMPT], ["4", ""])
    logs = {key: values.tolist() for key, values in result["extra_logs"].items()}
    assert result["rewards"].tolist() == [0.5, 0.5]  # a tie, then the empty reference's fallback
    assert logs["rmr1_no_reference"] == [0.0, 1.0] and logs["rmr1_bad_input"] == [0.0, 0.0]
    assert {key: logs[key] for key in sorted(HEALTH_KEYS)} == {
        "rmr1_health/confidence": [0.5, 0.5],  # no verdict probabilities: neutral
        "rmr1_health/invalid_probs": [0.0, 0.0],
        "rmr1_health/length_corr": [0.0, 0.0],
        "rmr1_health/longer_wins": [0.5, 0.5],  # no combined verdict: neutral
        "rmr1_health/orders_agree": [0.0, 0.0],
        "rmr1_health/slot_a": [1.0, 0.5],  # the bad input was never judged: neutral
        "rmr1_health/truncated": [0.0, 0.0],
        "rmr1_health/unparsed": [0.0, 0.0],
    }
    assert get_runtime().service.health.rates()["slot_a"] == 1.0
    get_runtime().service._hard_pairs.flush()
    [row] = [json.loads(line) for line in hard.read_text().splitlines()]
    assert (row["response_a"], row["response_b"], row["label"]) == ("four", "4", None)


def test_reward_settings_and_fallback_come_from_the_config(configure):
    unparsed = CONSTANT_A.replace("[[A]]", "none")
    configure(unparsed + "reward: {win: 1, loss: -1, on_unparsed: exclude}\n")
    result = reward_func([PROMPT + "4"], [PROMPT], ["four"])
    assert result["rewards"].tolist() == [0.0] and result["scores"].tolist() == [0.5]
    assert result["extra_logs"]["rmr1_unparsed"].tolist() == [1.0]


def test_concurrent_calls_from_threads_are_batched_and_not_mixed_up(configure, fake_judges):
    configure(
        "backend: {name: votes}\nsampling: {num_samples: 8}\nreward: {service: {max_wait_ms: 50}}\n"
    )
    results = {}

    def call(i):
        results[i] = reward_func([PROMPT + f"r{i}<|im_end|>"], [PROMPT], ["4"])["rewards"].item()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: (i % 9) / 8 for i in range(32)}
    batches = get_runtime().scorer.backend.batches
    assert sum(batches) == 32 + 1 and len(batches) < 16  # + the warm-up call


def test_an_invalid_configuration_gives_fallbacks_and_a_logged_error(configure, caplog):
    configure("backend: {name: constant}\nreward: {fallbak: 0}\n")
    result = reward_func([PROMPT + "4"], [PROMPT], ["four"])
    assert result["rewards"].tolist() == [0.5]
    assert result["extra_logs"]["rmr1_error"].tolist() == [1.0]
    assert "reward.fallbak: unknown key" in caplog.text


def test_a_refused_configuration_falls_back_on_its_own_scale(configure, caplog):
    """The file loaded (win 1, loss -1, fallback -0.25) but cannot be served here: its fallback
    counts, not the default scale's 0.5."""
    configure(
        "backend: {name: constant}\n"
        "reward: {strategy: round-robin, group: {size: 4}, win: 1, loss: -1, fallback: -0.25}\n"
    )
    result = reward_func([PROMPT + "4"], [PROMPT], ["four"])
    assert result["rewards"].tolist() == [-0.25]
    assert result["scores"].tolist() == [0.375]  # -0.25 on [-1, 1] mapped onto [0, 1]
    assert result["extra_logs"]["rmr1_error"].tolist() == [1.0]
    assert "could not be set up: reward.strategy 'round-robin'" in caplog.text


def test_in_group_rewards_are_refused_with_a_pointer_to_rmr1_serve(configure, caplog, monkeypatch):
    """Waiting for a group inside OpenRLHF's reward thread pool could hold every thread."""
    monkeypatch.setattr("rmr1_openrlhf.reward._last_setup_log", -float("inf"))  # log it now
    configure("backend: {name: constant}\nreward: {strategy: round-robin, group: {size: 4}}\n")
    result = reward_func([PROMPT + "4"], [PROMPT], ["four"])
    assert result["rewards"].tolist() == [0.5]
    assert result["extra_logs"]["rmr1_error"].tolist() == [1.0]
    assert "rmr1 serve" in caplog.text and "in-group rewards" in caplog.text
    configure("backend: {name: constant}\nreward: {strategy: reference, group: {size: 4}}\n")
    assert reward_func([PROMPT + "4"], [PROMPT], ["four"])["rewards"].tolist() == [1.0]


def test_check_command_reports_the_judges_view(configure, capsys):
    configure(CONSTANT_A)
    assert main(["check"]) == 0
    assert '"rewards": [1.0]' in capsys.readouterr().out
    configure("backend: {name: nope}\n")
    assert main(["check"]) == 2
    assert "unknown backend 'nope'" in capsys.readouterr().err


def test_a_config_file_shared_with_the_group_extensions(configure, capsys):
    configure(SHARED)
    result = reward_func([PROMPT + "4</s>"], [PROMPT], ["four"])
    assert result["rewards"].tolist() == [1.0]
    assert result["extra_logs"]["rmr1_fallback"].tolist() == [0.0]
    assert reward_func([PROMPT + "4"], [PROMPT], [""])["rewards"].tolist() == [0.25]  # bad label
    config = get_runtime().service.config
    assert (
        config.service.timeout_s,
        config.service.max_concurrent_batches,
        config.inputs.end_tokens,
    ) == (60, 4, ["</s>"])
    configure(SHARED + "  stratgy: knockout\n")
    broken = reward_func([PROMPT + "4"], [PROMPT], ["four"])
    assert broken["rewards"].tolist() == [0.5]  # the default fallback: the file did not load
    assert broken["extra_logs"]["rmr1_error"].tolist() == [1.0]
    assert main(["check"]) == 2
    assert re.search(r"reward\.stratgy: unknown key\n  \(in .*rmr1.yaml\)", capsys.readouterr().err)


texts = st.text(max_size=200)
values = st.none() | st.integers() | texts | st.dictionaries(texts, texts, max_size=2)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    queries=st.lists(texts, max_size=3) | texts | st.none(),
    prompts=st.lists(values, max_size=4) | st.none(),
    labels=st.lists(values, max_size=4) | values,
)
def test_never_raises_and_answers_every_query(constant_judge, queries, prompts, labels):
    result = reward_func(queries, prompts, labels)
    expected = len(queries) if isinstance(queries, list) and queries else 1
    assert len(result["rewards"]) == len(result["scores"]) == expected
    assert not torch.isnan(result["rewards"]).any()
    assert all(len(v) == expected for v in result["extra_logs"].values())


def test_every_path_gives_the_same_keys_so_openrlhf_can_batch_them(configure):
    """OpenRLHF batches a step's samples with the first sample's extra-log keys: a judged sample
    (both orders) followed by a set-up failure must stack (it raised KeyError before)."""
    from openrlhf.trainer.ppo_utils.experience import Experience, make_experience_batch

    configure(CONSTANT_A + "order: both\n")
    judged = reward_func([PROMPT + "4"], [PROMPT], ["four"])
    configure("backend: {name: constant}\nreward: {fallbak: 0}\n")
    failed = reward_func([PROMPT + "4"], [PROMPT], ["four"])
    assert list(judged["extra_logs"]) == list(failed["extra_logs"]) == list(KEYS)
    items = [  # as OpenRLHF's samples generator converts them
        Experience(
            info={k: torch.tensor([v.flatten()[0].item()]) for k, v in out["extra_logs"].items()}
        )
        for out in (judged, failed)
    ]
    batch = make_experience_batch(items)
    assert [v.item() for v in batch.info["rmr1_fallback"]] == [0.0, 1.0]
    assert [v.item() for v in batch.info["rmr1_health/orders_agree"]] == [0.0, 0.0]


def test_a_system_turn_reaches_the_judge_as_in_every_trainer(configure, fake_judges):
    """A templated prompt with a system turn gives the judge the Python API's prompt."""
    from rmr1_plugins import Scorer
    from rmr1_plugins.rewards.engine import Group, score_groups

    chat = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "2+2?"}]
    templated = (
        "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    api = VotesJudge()  # response r8: 8 of 8 votes for slot A
    score_groups(Scorer(api), [Group(chat, ["r8"], reference="5")], "reference")
    [expected] = api.conversations
    assert "Be terse.\n\n2+2?" in expected[-1]["content"]
    configure("backend: {name: votes}\nreward: {service: {max_wait_ms: 0}}\n")
    labels = ["5", json.dumps({"reference": "5", "question": chat})]
    for label in labels:
        assert reward_func([templated + "r8<|im_end|>"], [templated], [label])["rewards"] == 1.0
    # the same pair both times: the judge saw it once, the scorer's cache answered the second
    assert get_runtime().scorer.backend.conversations[1:] == [expected]  # after the warm-up call
