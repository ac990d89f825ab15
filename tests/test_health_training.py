"""Judge-health metrics for training (rmr1_plugins.rewards.health.Tally) and hard pairs for the next
judge (rmr1_plugins.rewards.hard_pairs), through the real scoring paths with scripted judges."""

from __future__ import annotations

import asyncio
import json
import math
import os
import threading

import pytest

from rmr1_plugins import Scorer
from rmr1_plugins.recipe.prepare import PrepareConfig, PrepareStats, read_preferences
from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.rewards.engine import Group, score_groups, texts_of
from rmr1_plugins.rewards.hard_pairs import (
    HardPairWriter,
    hard_row,
    hardness,
    record_groups,
    writer_for,
)
from rmr1_plugins.rewards.health import (
    METRICS,
    PREFIX,
    Tally,
    comparison_tally,
    confidence,
    length_correlation,
)
from rmr1_plugins.rewards.inputs import Sample
from rmr1_plugins.rewards.service import RewardService
from rmr1_plugins.schema import Judgment, Message, PairResult, PairwiseExample
from rmr1_plugins.testing import AlwaysA, LongerWins

PROMPT = "<|im_start|>user\nSay something.<|im_end|>\n<|im_start|>assistant\n"


def test_confidence_is_the_mean_distance_from_a_coin_flip():
    judgments = [{"prob_a": 0.9}, {"prob_a": 0.2}, {"prob_a": None}, {}]
    assert confidence(judgments) == pytest.approx((0.9 + 0.8) / 2)
    assert confidence([{"prob_a": None}]) is None


def test_length_correlation_is_pearson_over_completions_with_a_reward():
    assert length_correlation([0.0, 0.5, 1.0], [1, 2, 3]) == pytest.approx(1.0)
    assert length_correlation([1.0, 0.5, 0.0], [1, 2, 3]) == pytest.approx(-1.0)
    # the None reward is left out: (0, 1) against (1, 3) is perfectly correlated
    assert length_correlation([0.0, None, 1.0], [1, 100, 3]) == pytest.approx(1.0)
    r = length_correlation([0.0, 1.0, 0.5, 0.5], [1, 2, 3, 4])
    xs, ys = [0.0, 1.0, 0.5, 0.5], [1, 2, 3, 4]
    mx, my = sum(xs) / 4, sum(ys) / 4
    cov = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    expected = cov / math.sqrt(sum((x - mx) ** 2 for x in xs) * sum((y - my) ** 2 for y in ys))
    assert r == pytest.approx(expected)
    assert length_correlation([0.5, 0.5, 0.5], [1, 2, 3]) is None  # equal rewards
    assert length_correlation([0.0, 1.0], [4, 4]) is None  # equal lengths
    assert length_correlation([1.0, None], [1, 2]) is None  # one point


def test_an_always_a_judge_in_both_orders_shows_pure_position_bias():
    scorer = Scorer(AlwaysA(options={"prob": 0.9}), order="both")
    group = Group("Say something.", ["x", "yy", "zzz"])
    [rewards] = score_groups(scorer, [group], "round-robin")
    assert rewards.rewards == [0.5, 0.5, 0.5]  # every comparison a tie
    rates = comparison_tally(rewards, texts_of(group)).rates()
    assert rates == {
        "slot_a": 1.0,
        "orders_agree": 0.0,
        "unparsed": 0.0,
        "truncated": 0.0,
        "confidence": pytest.approx(0.9),
        "invalid_probs": 0.0,
        "longer_wins": None,  # no comparison got a verdict
        "length_corr": None,  # all rewards equal
    }
    logs = comparison_tally(rewards, texts_of(group), index=0).sample_logs()
    assert logs == {
        PREFIX + "slot_a": 1.0,
        PREFIX + "orders_agree": 0.0,
        PREFIX + "unparsed": 0.0,
        PREFIX + "truncated": 0.0,
        PREFIX + "confidence": pytest.approx(0.9),
        PREFIX + "invalid_probs": 0.0,
        PREFIX + "longer_wins": 0.5,
        PREFIX + "length_corr": 0.0,
    }


def test_a_longer_wins_judge_shows_length_bias_and_no_position_bias():
    scorer = Scorer(LongerWins(), order="both")
    group = Group("Say something.", ["x", "yy", "zzz"])
    [rewards] = score_groups(scorer, [group], "round-robin")
    assert rewards.rewards == [0.0, 0.5, 1.0]
    rates = comparison_tally(rewards, texts_of(group)).rates()
    assert rates["longer_wins"] == 1.0 and rates["length_corr"] == pytest.approx(1.0)
    assert rates["slot_a"] == 0.5 and rates["orders_agree"] == 1.0
    assert rates["confidence"] is None  # the judge gives no probabilities
    longest = comparison_tally(rewards, texts_of(group), index=2).sample_logs()
    assert longest[PREFIX + "orders_agree"] == 1.0 and longest[PREFIX + "longer_wins"] == 1.0


def test_unparsed_and_truncated_are_fractions_of_judgments():
    judgments = [
        Judgment(verdict=None, completion="cut", finish_reason="length"),
        Judgment(verdict="A", completion="<answer>[[A]]</answer>", finish_reason="stop"),
        Judgment(verdict="A", completion="<answer>[[B]]</answer>", swapped=True),
        Judgment(verdict=None, completion="?", finish_reason="stop", prob_invalid=True),
    ]
    pair = PairResult(verdict="A", votes={"A": 2, "B": 0, "none": 2}, judgments=judgments)
    tally = Tally()
    tally.add_pair(pair, (10, 3))
    assert tally.rates() == {
        "slot_a": 0.5,  # one of the two verdicts was slot A as shown (the swapped one was B)
        "orders_agree": None,
        "unparsed": 0.5,
        "truncated": 0.25,
        "confidence": None,
        "invalid_probs": 0.25,  # one judgment's log-probabilities were impossible
        "longer_wins": 1.0,
        "length_corr": None,
    }
    assert set(Tally().sample_logs()) == {PREFIX + m for m in METRICS}


def test_impossible_probabilities_count_in_health_and_the_hard_verdict_stands():
    # Before: counted only in scorer.stats; judge health showed nothing (issue 21 item 4).
    scorer = Scorer(AlwaysA(options={"prob": 1.5}))  # a probability above 1: impossible
    group = Group("Say something.", ["x", "yy"])
    [rewards] = score_groups(scorer, [group], "round-robin")
    assert sorted(rewards.rewards) == [0.0, 1.0]  # the hard [[A]] verdict: a win and a loss
    assert scorer.stats["invalid_probs"] == 1
    rates = comparison_tally(rewards, texts_of(group)).rates()
    assert rates["invalid_probs"] == 1.0 and rates["confidence"] is None
    logs = comparison_tally(rewards, texts_of(group), index=0).sample_logs()
    assert logs[PREFIX + "invalid_probs"] == 1.0


# -- hard pairs ------------------------------------------------------------------------------


def flip(prob: float | None = None) -> PairResult:
    judgments = [
        Judgment(verdict="A", completion="a", prob_a=prob),
        Judgment(verdict="B", completion="b", swapped=True, prob_a=prob),
    ]
    return PairResult(
        verdict=None, votes={"A": 1, "B": 1, "none": 0}, orders_agree=False, judgments=judgments
    )


def test_hardness_picks_order_flips_and_low_confidence():
    sure = PairResult(verdict="A", votes={"A": 1, "B": 0, "none": 0}, judgments=[], prob_a=0.95)
    unsure = sure.model_copy(update={"prob_a": 0.45})
    assert hardness(flip(), 0.6) == "order_flip"
    assert hardness(unsure, 0.6) == "low_confidence" and hardness(sure, 0.6) is None
    plain = sure.model_copy(update={"prob_a": None})
    assert hardness(plain, 0.6) is None


def writer_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_hard_pairs_from_real_groups_are_native_pairs_rmr1_score_reads(tmp_path):
    path = tmp_path / "hard.jsonl"
    options = RewardConfig(hard_pairs={"path": str(path)})
    scorer = Scorer(AlwaysA(), order="both")
    groups = [Group("Say something.", ["x", "yy", "zzz"]), Group("Other?", ["p", "p"])]
    results = score_groups(scorer, groups, "round-robin")
    record_groups(options, groups, results)
    writer = writer_for(options)
    writer.flush()
    rows = writer_rows(path)
    # three order flips in the first group; the identical pair was never judged
    assert [r["id"].split("-")[1] for r in rows] == ["order_flip"] * 3
    assert {frozenset((r["response_a"], r["response_b"])) for r in rows} == {
        frozenset(p) for p in (("x", "yy"), ("x", "zzz"), ("yy", "zzz"))
    }
    for row in rows:
        assert set(row) == {"id", "context", "response_a", "response_b", "label"}
        assert row["label"] is None and row["context"][0]["content"] == "Say something."
        PairwiseExample.from_row(row)  # what rmr1 score reads
    assert writer.stats["written"] == 3


def test_recipe_prepare_takes_hard_pairs_once_labelled_and_names_an_unlabelled_line(tmp_path):
    context = [Message(role="user", content="Which?")]
    rows = [
        hard_row("order_flip", context, "one", "two"),
        hard_row("low_confidence", context, "3", "4"),
    ]
    path = tmp_path / "hard.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = PrepareConfig(max_prompt_tokens=None)
    with pytest.raises(ValueError, match=r"hard.jsonl, line 1: field 'label': required"):
        read_preferences([str(path)], config, PrepareStats())
    labelled = [{**rows[0], "label": "B"}, {**rows[1], "label": "A"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in labelled))
    found = read_preferences([str(path)], config, PrepareStats())
    assert [(p.chosen, p.rejected) for p in found] == [("two", "one"), ("3", "4")]


def test_hard_pair_file_is_bounded_and_a_torn_last_line_is_cut(tmp_path):
    path = tmp_path / "hard.jsonl"
    path.write_text('{"id": "old"}\n{"id": "torn", "cont')  # a writer died mid-line
    writer = HardPairWriter(path, max_records=3, confidence=0.6)
    context = [Message(role="user", content="q")]
    for i in range(5):
        writer.offer(flip(), context, f"a{i}", "b")
    writer.flush()
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0]) == {"id": "old"}
    assert [json.loads(line)["response_a"] for line in lines[1:]] == ["a0", "a1"]
    assert writer.stats["written"] == 2 and writer.stats["over_limit"] == 3
    writer.close()


def test_two_writers_share_a_file_without_mixing_lines_or_passing_the_bound(tmp_path):
    path = tmp_path / "hard.jsonl"
    writers = [HardPairWriter(path, max_records=150, confidence=0.6) for _ in range(2)]
    context = [Message(role="user", content="q")]

    def offer(writer, tag):
        for i in range(100):
            writer.offer(flip(), context, f"{tag}{i}" + "x" * 5000, "b")

    pairs = zip(writers, "pq", strict=True)
    threads = [threading.Thread(target=offer, args=pair) for pair in pairs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for writer in writers:
        writer.flush()
    rows = writer_rows(path)  # every line parses: none interleaved
    assert len(rows) == 150
    assert sum(w.stats["written"] for w in writers) == 150
    for writer in writers:
        writer.close()


def test_offering_never_blocks_when_the_disk_is_slow(tmp_path, monkeypatch):
    """A stalled write fills the bounded queue; offers then drop pairs instead of waiting."""
    import rmr1_plugins.rewards.hard_pairs as hard_pairs

    release = threading.Event()
    real_append = HardPairWriter._append

    def stalled(self, rows):
        release.wait(30)
        real_append(self, rows)

    monkeypatch.setattr(hard_pairs, "QUEUE_LIMIT", 4)
    monkeypatch.setattr(HardPairWriter, "_append", stalled)
    writer = HardPairWriter(tmp_path / "hard.jsonl", max_records=100, confidence=0.6)
    context = [Message(role="user", content="q")]
    done = threading.Event()

    def offer_many():
        for i in range(50):
            writer.offer(flip(), context, f"a{i}", "b")
        done.set()

    thread = threading.Thread(target=offer_many, daemon=True)
    thread.start()
    assert done.wait(20), "offer blocked on a stalled writer"
    assert writer.stats["dropped"] > 0
    release.set()
    writer.flush()
    assert writer.stats["written"] + writer.stats["dropped"] == 50
    writer.close()


def test_a_write_error_is_counted_not_raised(tmp_path):
    folder = tmp_path / "file-not-folder"
    folder.write_text("")
    writer = HardPairWriter(folder / "hard.jsonl", max_records=10, confidence=0.6)
    writer.offer(flip(), [Message(role="user", content="q")], "a", "b")
    writer.flush()
    assert writer.stats["write_errors"] == 1 and not os.path.exists(folder / "hard.jsonl")
    writer.close()


# -- the reward service (OpenRLHF, rmr1 serve) -------------------------------------------------


def test_reward_service_pools_health_and_writes_hard_pairs(tmp_path):
    path = tmp_path / "hard.jsonl"
    config = RewardConfig(hard_pairs={"path": str(path), "confidence": 0.95})
    scorer = Scorer(AlwaysA(options={"prob": 0.9}))  # one order: low confidence is the signal

    async def scenario():
        service = RewardService(scorer, config)
        try:
            return service, await service.rewards(
                [Sample(PROMPT + "short<|im_end|>", PROMPT, "a longer reference")]
            )
        finally:
            await service.aclose()

    service, [reward] = asyncio.run(scenario())
    assert reward.reward == 1.0
    assert reward.extra_logs[PREFIX + "slot_a"] == 1.0
    assert reward.extra_logs[PREFIX + "confidence"] == pytest.approx(0.9)
    assert reward.extra_logs[PREFIX + "longer_wins"] == 0.0  # the shorter response won
    assert service.health.rates()["slot_a"] == 1.0
    service._hard_pairs.flush()
    [row] = writer_rows(path)
    assert row["id"].startswith("hard-low_confidence-") and row["response_a"] == "short"


def test_training_rates_are_the_eval_report_numbers():
    """One definition, one unit: Tally's pooled rates are health.summary's, name for name."""
    from rmr1_plugins.rewards import health

    scorer = Scorer(LongerWins(), order="both")
    groups = [Group("Q?", ["x", "yy", "zzz", "??"]), Group("R?", ["aaaa", "b", "cc"])]
    pairs, sizes, tally = [], {}, Tally()
    for group, rewards in zip(groups, score_groups(scorer, groups, "round-robin"), strict=True):
        texts = texts_of(group)
        tally.merge(comparison_tally(rewards, texts))
        for n, c in enumerate(c for c in rewards.comparisons if c.result is not None):
            pair = c.result.model_copy(update={"id": f"{group.prompt}{n}"})
            pairs.append(pair)
            sizes[pair.id] = (len(texts[c.first]), len(texts[c.second]))
    report, rates = health.summary(pairs, sizes), tally.rates()
    assert report["unparsed"] > 0  # the "??" pairs have no verdict
    names = ("slot_a", "orders_agree", "unparsed", "truncated", "invalid_probs", "longer_wins")
    for name in names:
        assert rates[name] == pytest.approx(report[name]), name
