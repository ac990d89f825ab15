"""Parity in the core environment: the Python API and ``rmr1 serve`` give the same judge prompts,
rewards and logged keys for the parity case (rmr1_plugins.testing.parity).

``rmr1 serve`` runs in a subprocess on 127.0.0.1 with the recording judge registered, and is
asked the way OpenRLHF asks: one request per rollout, all at once, with the templated strings of
SmolLM2's chat template. Without a group size it judges each rollout against the label's
reference; with ``group: {size: 3}`` and ``round-robin`` it holds the three rollouts and judges them
as a group (cohort mode). The trainers' own paths are in each adapter's ``test_*_parity.py``.
"""

from __future__ import annotations

import pytest

from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.testing.parity import (
    COMPLETIONS,
    EXCLUDE,
    EXPECTED,
    EXPECTED_FALLBACK,
    FALLBACK_COMPLETIONS,
    STRATEGIES,
    Serve,
    api,
    assert_same,
    check_judge_saw_the_system_turn,
    from_openrlhf,
    judge_prompts,
    post_each,
    write_config,
)

FALLBACK = RewardConfig().fallback_reward  # what the OpenRLHF paths give for a fallback


@pytest.fixture(scope="module")
def reference_api(tmp_path_factory):
    return {s: api(tmp_path_factory.mktemp(f"api-{s}"), s) for s in STRATEGIES}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_python_api_gives_the_pinned_case(reference_api, strategy):
    from rmr1_plugins.rewards.metrics import KEYS

    outcome = reference_api[strategy]
    assert outcome.rewards == EXPECTED[strategy]
    check_judge_saw_the_system_turn(outcome.prompts)
    # both orders of every judged pair; "4" against the reference "4" is a tie without the judge
    assert len(outcome.prompts) == {"reference": 2, "round-robin": 3}[strategy] * 2
    assert outcome.keys == [set(KEYS)] * len(COMPLETIONS)  # the metrics contract


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_ascore_groups_matches_score_groups(reference_api, strategy, tmp_path):
    assert_same("ascore_groups", api(tmp_path, strategy, "async"), reference_api[strategy])


def test_rmr1_serve_reference_rewards_match_the_python_api(reference_api, tmp_path):
    config, record = write_config(tmp_path, "serve")
    with Serve(config) as server:
        answers = post_each(server.url, COMPLETIONS)
    assert all("error" not in a for a in answers), [a.get("error") for a in answers]
    got = from_openrlhf(record, answers)
    assert_same("rmr1 serve /get_reward", got, reference_api["reference"])


def test_rmr1_serve_cohorts_match_the_python_api(reference_api, tmp_path):
    config, record = write_config(tmp_path, "cohort", strategy="round-robin", group={"size": 3})
    with Serve(config) as server:
        answers = post_each(server.url, COMPLETIONS)
    assert all("error" not in a for a in answers), [a.get("error") for a in answers]
    got = from_openrlhf(record, answers)
    assert_same("rmr1 serve cohorts", got, reference_api["round-robin"])


def fallback_api(tmp_path, strategy, **case):
    """The Python API's outcome for a fallback case, in its own folder (own record)."""
    folder = tmp_path / f"api-{strategy}-{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    return api(folder, strategy, **case)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_python_api_gives_the_pinned_fallback_case(strategy, tmp_path):
    mute = fallback_api(tmp_path, strategy, completions=FALLBACK_COMPLETIONS, **EXCLUDE)
    assert mute.rewards == EXPECTED_FALLBACK[strategy]
    fell = mute.logs[2]
    assert fell["rmr1_unparsed"] == fell["rmr1_fallback"] == 1.0 and fell["rmr1_group"] == 0.0
    empty = fallback_api(tmp_path, "reference", reference="")
    assert empty.rewards == [None] * 3 and empty.prompts == []
    assert all(log["rmr1_no_reference"] == log["rmr1_fallback"] == 1.0 for log in empty.logs)


def test_rmr1_serve_fallbacks_match_the_python_api(tmp_path):
    config, record = write_config(tmp_path, "serve-fallback", **EXCLUDE)
    with Serve(config) as server:
        mute = from_openrlhf(record, post_each(server.url, FALLBACK_COMPLETIONS))
        empty = post_each(server.url, COMPLETIONS, label="")
    expected = fallback_api(tmp_path, "reference", completions=FALLBACK_COMPLETIONS, **EXCLUDE)
    assert_same("rmr1 serve /get_reward, unparsed", mute, expected, FALLBACK)
    assert judge_prompts(record) == mute.prompts  # the empty reference never reached the judge
    no_reference = fallback_api(tmp_path, "reference", reference="")
    unjudged = from_openrlhf(tmp_path / "none.jsonl", empty)  # no prompts: checked just above
    assert_same("rmr1 serve /get_reward, empty reference", unjudged, no_reference, FALLBACK)


def test_rmr1_serve_cohort_fallbacks_match_the_python_api(tmp_path):
    reward = {"strategy": "round-robin", "group": {"size": 3}, **EXCLUDE}
    config, record = write_config(tmp_path, "cohort-fallback", **reward)
    with Serve(config) as server:
        answers = post_each(server.url, FALLBACK_COMPLETIONS)
    expected = fallback_api(tmp_path, "round-robin", completions=FALLBACK_COMPLETIONS, **EXCLUDE)
    assert_same("rmr1 serve cohorts, unparsed", from_openrlhf(record, answers), expected, FALLBACK)
