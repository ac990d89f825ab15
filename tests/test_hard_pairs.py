"""Hard pairs for the next judge (rmr1_plugins.rewards.hard_pairs): which comparisons are hard,
the rows written for them, and the writer's limits, torn lines, drops and write errors."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest

from rmr1_plugins import PairwiseExample, Scorer
from rmr1_plugins.rewards import hard_pairs
from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.rewards.engine import score_groups
from rmr1_plugins.rewards.hard_pairs import HardPairWriter, hard_row, hardness, record_groups
from rmr1_plugins.schema import Message, PairResult
from rmr1_plugins.testing import ScriptedJudge, group

CONTEXT = [Message(role="user", content="2+2?")]


def result(orders_agree=None, prob_a=None):
    return PairResult(verdict="A", votes={"A": 1}, orders_agree=orders_agree, judgments=[],
                      prob_a=prob_a)  # fmt: skip


@pytest.fixture
def writer(tmp_path):
    made = []

    def make(max_records=100, confidence=0.6, path=None):
        made.append(HardPairWriter(path or tmp_path / "hard.jsonl", max_records, confidence))
        return made[-1]

    yield make
    for each in made:
        each.close()


def lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_order_flips_and_low_confidence_are_hard_and_nothing_else():
    assert hardness(result(orders_agree=False), 0.6) == "order_flip"
    assert hardness(result(orders_agree=False, prob_a=0.99), 0.6) == "order_flip"  # flip first
    assert hardness(result(prob_a=0.55), 0.6) == "low_confidence"
    assert hardness(result(prob_a=0.45), 0.6) == "low_confidence"  # max(p, 1 - p)
    assert hardness(result(prob_a=0.6), 0.6) is None  # below, not at, the threshold
    assert hardness(result(prob_a=0.1), 0.6) is None  # confident for B
    assert hardness(result(orders_agree=True, prob_a=0.9), 0.6) is None
    assert hardness(result(), 0.6) is None  # one order, no probability: nothing says unsure


def test_a_hard_row_is_an_unlabelled_native_pair_named_by_reason_and_content():
    row = hard_row("order_flip", CONTEXT, "4", "5")
    assert row["context"] == [{"role": "user", "content": "2+2?"}]
    assert (row["response_a"], row["response_b"], row["label"]) == ("4", "5", None)
    prefix, digest = row["id"].rsplit("-", 1)
    assert prefix == "hard-order_flip" and len(digest) == 16 and int(digest, 16) >= 0
    assert hard_row("order_flip", CONTEXT, "4", "5")["id"] == row["id"]  # a repeat: same id
    assert hard_row("order_flip", CONTEXT, "5", "4")["id"] != row["id"]  # order matters
    assert hard_row("low_confidence", CONTEXT, "4", "5")["id"].endswith(digest)
    assert PairwiseExample.model_validate({**row, "label": "A"}).response_a == "4"


def test_only_hard_pairs_are_written_and_counted(writer, tmp_path):
    hard = writer()
    assert hard.offer(result(orders_agree=True), CONTEXT, "4", "5") is None
    assert hard.offer(result(orders_agree=False), CONTEXT, "4", "5") == "order_flip"
    assert hard.offer(result(prob_a=0.5), CONTEXT, "4", "six") == "low_confidence"
    hard.flush()
    rows = lines(tmp_path / "hard.jsonl")
    assert [r["id"].split("-")[1] for r in rows] == ["order_flip", "low_confidence"]
    assert [r["response_b"] for r in rows] == ["5", "six"]
    assert hard.stats == Counter(hard=2, written=2)  # nothing dropped, nothing over


def test_the_file_never_holds_more_than_max_records_counting_what_was_there(writer, tmp_path):
    path = tmp_path / "hard.jsonl"
    path.write_text('{"old": 1}\n')  # a previous run's pair
    hard = writer(max_records=3)
    for b in ("5", "6", "7"):
        hard.offer(result(orders_agree=False), CONTEXT, "4", b)
    hard.flush()
    assert len(lines(path)) == 3 and hard.stats["written"] == 2
    assert hard.stats["over_limit"] == 1
    hard.offer(result(orders_agree=False), CONTEXT, "4", "8")  # full: not even queued
    hard.flush()
    assert len(lines(path)) == 3 and hard.stats["over_limit"] == 2 and hard.stats["hard"] == 4


def test_lines_another_process_wrote_are_counted_again(writer, tmp_path):
    path = tmp_path / "hard.jsonl"
    hard = writer(max_records=3)
    hard.offer(result(orders_agree=False), CONTEXT, "4", "5")
    hard.flush()
    with path.open("a") as other:  # another process sharing the file
        other.write('{"other": 1}\n{"other": 2}\n')
    hard.offer(result(orders_agree=False), CONTEXT, "4", "6")
    hard.flush()
    assert len(lines(path)) == 3 and hard.stats["over_limit"] == 1


def test_a_torn_last_line_is_cut_off_before_the_next_append(writer, tmp_path):
    path = tmp_path / "hard.jsonl"
    path.write_text('{"whole": 1}\n{"torn": ')  # a writer died mid-line
    hard = writer()
    hard.offer(result(orders_agree=False), CONTEXT, "4", "5")
    hard.flush()
    rows = lines(path)
    assert rows[0] == {"whole": 1} and rows[1]["response_b"] == "5" and len(rows) == 2


def test_a_record_over_the_size_limit_is_skipped(writer, tmp_path):
    hard = writer()
    huge = "x" * hard_pairs.MAX_RECORD_BYTES
    hard.offer(result(orders_agree=False), CONTEXT, huge, "5")
    hard.offer(result(orders_agree=False), CONTEXT, "4", "5")
    hard.flush()
    assert [r["response_a"] for r in lines(tmp_path / "hard.jsonl")] == ["4"]
    assert hard.stats["too_large"] == 1 and hard.stats["written"] == 1


def test_a_write_error_is_counted_and_logged_never_raised(writer, tmp_path, caplog):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    hard = writer(path=blocked / "hard.jsonl")  # its folder is a file: cannot be created
    assert hard.offer(result(orders_agree=False), CONTEXT, "4", "5") == "order_flip"
    hard.flush()
    assert hard.stats["write_errors"] == 1 and "cannot write" in caplog.text


def test_a_full_queue_drops_the_pair_instead_of_blocking(writer, tmp_path, monkeypatch):
    monkeypatch.setattr(hard_pairs, "QUEUE_LIMIT", 1)
    entered, release = threading.Event(), threading.Event()
    append = HardPairWriter._append

    def held(self, rows):  # the disk is slow: the writer thread is busy with the first pair
        entered.set()
        assert release.wait(30), "never released"
        append(self, rows)

    monkeypatch.setattr(HardPairWriter, "_append", held)
    hard = writer()
    hard.offer(result(orders_agree=False), CONTEXT, "4", "1")  # taken by the thread
    assert entered.wait(30)
    hard.offer(result(orders_agree=False), CONTEXT, "4", "2")  # fills the queue of one
    hard.offer(result(orders_agree=False), CONTEXT, "4", "3")  # dropped, offer returns
    assert hard.stats["dropped"] == 1
    release.set()
    hard.flush()
    assert [r["response_b"] for r in lines(tmp_path / "hard.jsonl")] == ["1", "2"]


def test_one_writer_per_settings_and_none_without_a_path(tmp_path, monkeypatch):
    monkeypatch.setattr(hard_pairs, "_WRITERS", {})
    assert hard_pairs.writer_for(RewardConfig()) is None
    path = str(tmp_path / "hard.jsonl")
    first = hard_pairs.writer_for(RewardConfig(hard_pairs={"path": path}))
    try:
        assert hard_pairs.writer_for(RewardConfig(hard_pairs={"path": path})) is first
        assert first.confidence == 0.6 and first.max_records == 100_000  # the defaults
        other = hard_pairs.writer_for(RewardConfig(hard_pairs={"path": path, "confidence": 0.9}))
        assert other is not first and other.confidence == 0.9
        other.close()
    finally:
        first.close()


def test_record_groups_writes_every_comparison_of_a_group_with_a_hard_one(tmp_path, monkeypatch):
    monkeypatch.setattr(hard_pairs, "_WRITERS", {})
    path = tmp_path / "hard.jsonl"
    options = RewardConfig(hard_pairs={"path": str(path)})
    # Always [[A]] in both orders: every comparison flips with the order.
    scorer = Scorer(ScriptedJudge(), order="both")
    groups = [group([1, 2, 3], prompt="Pick a number.")]
    results = score_groups(scorer, groups, "round-robin")
    record_groups(options, groups, results)
    writer = hard_pairs.writer_for(options)
    try:
        writer.flush()
        rows = lines(path)
    finally:
        writer.close()
    pairs = {(r["response_a"], r["response_b"]) for r in rows}
    assert len(rows) == 3 and all(r["id"].startswith("hard-order_flip-") for r in rows)
    assert {frozenset(p) for p in pairs} == {
        frozenset(p) for p in [("answer 1", "answer 2"), ("answer 1", "answer 3"),
                               ("answer 2", "answer 3")]
    }  # fmt: skip
    assert all(r["context"] == [{"role": "user", "content": "Pick a number."}] for r in rows)
    record_groups(RewardConfig(), groups, results)  # no path: nothing, no writer
