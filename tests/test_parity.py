"""Parity in the core environment: the Python API and ``rmr1 serve`` give the same judge prompts,
rewards and logged keys for the parity case (tests/parity_case.py).

``rmr1 serve`` runs in a subprocess on 127.0.0.1 with the recording judge registered, and is
asked the way OpenRLHF asks: one request per rollout, all at once, with the templated strings of
SmolLM2's chat template. Without a group size it judges each rollout against the label's
reference; with ``group_size: 3`` and ``round-robin`` it holds the three rollouts and judges them
as a group (cohort mode). The trainers' own paths are in each adapter's ``test_*_parity.py``.
"""

from __future__ import annotations

import pytest
from parity_case import (
    COMPLETIONS,
    EXPECTED,
    STRATEGIES,
    Serve,
    api,
    assert_same,
    check_judge_saw_the_system_turn,
    from_openrlhf,
    post_each,
    write_config,
)


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
    config, record = write_config(tmp_path, "cohort", strategy="round-robin", group_size=3)
    with Serve(config) as server:
        answers = post_each(server.url, COMPLETIONS)
    assert all("error" not in a for a in answers), [a.get("error") for a in answers]
    got = from_openrlhf(record, answers)
    assert_same("rmr1 serve cohorts", got, reference_api["round-robin"])
