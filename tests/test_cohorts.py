"""The cohort service: whole-group rewards from one-rollout-at-a-time requests."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace

import pytest

from rmr1_plugins import Scorer
from rmr1_plugins.backends.base import Backend, Generation
from rmr1_plugins.config import deep_merge
from rmr1_plugins.rewards.cohort_table import CohortTable, Member, Overloaded
from rmr1_plugins.rewards.cohorts import CohortService
from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.rewards.metrics import KEYS
from rmr1_plugins.rewards.service import RewardService
from rmr1_plugins.testing import GROUP_STRATEGIES as NAMES
from rmr1_plugins.testing import ScriptedJudge
from rmr1_plugins.testing.judges import ranker


def member(key, value, size=4, reference="answer 2.5", prompt="Pick a number."):
    return Member(key, size, prompt, f"answer {value}", reference)


def service(answer=ranker, **reward):
    backend = ScriptedJudge(answer)
    options = {"group": {"timeout_s": 0.3}, "service": {"timeout_s": 5.0}}
    return CohortService(Scorer(backend), RewardConfig(**deep_merge(options, reward))), backend


def run(coroutine):
    return asyncio.run(coroutine)


async def ask(svc, members):
    """Every member's answer; they arrive in list order (each task submits before it awaits)."""
    return await asyncio.gather(*(svc.reward(m) for m in members))


def test_a_group_is_judged_together_whatever_the_arrival_order():
    svc, backend = service(group={"stream_pairs": False})  # both cohorts' pairs in one call
    members = [member(key, v, prompt=key) for key in ("p", "q") for v in (1, 2, 3, 4)]
    order = list(range(8))
    random.Random(1).shuffle(order)  # the two prompts' rollouts interleave

    async def go():
        answers = await ask(svc, [members[i] for i in order])
        return dict(zip(order, answers, strict=True))

    by_index = run(go())
    rewards = [by_index[i].reward for i in range(8)]
    assert rewards == pytest.approx([0, 1 / 3, 2 / 3, 1] * 2)  # round-robin win rates
    assert all(by_index[i].kind is None and by_index[i].group == 4 for i in range(8))
    assert [len(b) for b in backend.batches] == [12]  # C(4, 2) pairs each, in one shared call
    assert svc.stats["complete_cohorts"] == 2 and svc.stats["answered"] == 8
    assert svc.pending == 0 and len(svc.table) == 0
    logs = by_index[0].logs()
    assert logs["rmr1_fallback"] == 0.0 and logs["rmr1_group"] == 4.0
    assert list(logs) == list(by_index[5].logs()) == list(KEYS)


def test_a_repeated_prompt_splits_into_cohorts_in_arrival_order():
    svc, backend = service(group={"timeout_s": 0.2, "stream_pairs": False})  # one call per cohort
    values = [1, 8, 2, 7, 3, 6]  # one prompt, two rollout groups of 3 in one step

    answers = run(ask(svc, [member("p", v, size=3) for v in values]))
    assert [a.group for a in answers] == [3] * 6
    assert [a.reward for a in answers] == pytest.approx([0, 1, 0.5, 1, 0, 0.5])
    # two cohorts of three, three pairs each (batched together: they arrive at once)
    assert sum(map(len, backend.batches)) == 6 and svc.stats["complete_cohorts"] == 2


def test_a_group_of_one_is_judged_against_its_reference_at_once():
    svc, backend = service(group={"timeout_s": 100}, service={"timeout_s": 300})
    [above, below] = run(ask(svc, [member("a", 3, size=1), member("b", 2, size=1)]))
    assert (above.reward, below.reward) == (1.0, 0.0)  # vs "answer 2.5"
    assert above.kind is None and above.group == 1 and svc.stats["partial_cohorts"] == 0
    assert (above.logs()["rmr1_reference"], above.logs()["rmr1_split"]) == (1.0, 0.0)
    assert [len(b) for b in backend.batches] == [2]  # nobody waited for anybody


def test_a_partial_group_is_judged_with_what_arrived_after_its_deadline():
    svc, backend = service(group={"timeout_s": 0.2})
    answers = run(ask(svc, [member("p", v) for v in (1, 5, 3)]))  # 3 of 4 ever arrive
    assert [a.reward for a in answers] == pytest.approx([0.0, 1.0, 0.5])
    assert all(a.kind == "partial" and a.group == 3 and a.expected == 4 for a in answers)
    assert not any(a.fallback for a in answers) and svc.stats["partial"] == 3
    logs = answers[0].logs()  # judged with part of its group: split, not against the reference
    assert (logs["rmr1_split"], logs["rmr1_reference"]) == (1.0, 0.0) and svc.pending == 0
    assert [len(b) for b in backend.batches] == [3]  # the three pairs of those who came


def test_a_group_closed_short_follows_on_split_reference_or_drop():
    """The veRL manager's rules: each member against its reference, or the split fallback."""
    backend = ScriptedJudge(ranker)
    # without streaming: a dropped group costs no judgment (test_streaming: with it)
    config = RewardConfig(
        fallback=0.25, group={"timeout_s": 0.1, "stream_pairs": False}, service={"timeout_s": 5.0}
    )
    svc = CohortService(Scorer(backend), config, on_split="reference")
    answers = run(ask(svc, [member("p", v) for v in (1, 5)]))  # 2 of 4, reference 2.5
    assert [a.reward for a in answers] == [0.0, 1.0] and backend.batches[0] and svc.pending == 0
    assert all(a.kind == "alone" and (a.arrived, a.expected) == (2, 4) for a in answers)
    logs = answers[0].logs()
    assert (logs["rmr1_split"], logs["rmr1_reference"], logs["rmr1_group"]) == (1.0, 1.0, 1.0)

    backend = ScriptedJudge(ranker)
    svc = CohortService(Scorer(backend), config, on_split="drop")
    answers = run(ask(svc, [member("p", v) for v in (1, 5)]))
    assert [a.reward for a in answers] == [0.25, 0.25] and backend.batches == []
    assert all(a.kind == "dropped" and a.fallback and a.split for a in answers)
    logs = answers[1].logs()
    assert (logs["rmr1_split"], logs["rmr1_dropped"], logs["rmr1_fallback"]) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="on_split"):
        CohortService(Scorer(backend), config, on_split="error")


def test_one_member_alone_gets_its_reference_or_the_fallback():
    svc, _ = service(group={"timeout_s": 0.1})
    [alone] = run(ask(svc, [member("p", 9)]))
    assert alone.reward == 1.0 and alone.kind == "alone" and not alone.fallback
    svc, backend = service(fallback=0.25, group={"timeout_s": 0.1})
    [lost] = run(ask(svc, [member("p", 9, reference=None)]))
    assert lost.reward == 0.25 and lost.kind == "no_reference" and lost.fallback
    assert "got 1 of 4" in lost.error and backend.batches == []


def test_the_judge_deadline_answers_every_member_with_the_fallback():
    async def slow(*_):
        await asyncio.Event().wait()  # never set: a judge that hangs until cancelled

    svc, _ = service(group={"timeout_s": 0.05}, service={"timeout_s": 0.4})
    svc.scorer.ascore = slow  # a judge that hangs

    answers = run(ask(svc, [member("p", v) for v in (1, 2, 3, 4)]))
    assert all(a.kind == "timeout" and a.reward == 0.5 for a in answers)
    assert svc.stats["timeout"] == 4 and svc.pending == 0


def test_a_failing_judge_gives_the_counted_fallback():
    def boom(*_):
        raise RuntimeError("engine died")

    svc, _ = service()
    svc.scorer.backend.generate = boom
    answers = run(ask(svc, [member("p", v, size=2) for v in (1, 2)]))
    assert all(a.kind == "error" and "engine died" in a.error for a in answers)
    assert svc.stats["error"] == 2 and svc.stats["answered"] == 2


def test_unparsed_comparisons_follow_on_unparsed():
    svc, _ = service(on_unparsed="exclude")
    answers = run(ask(svc, [member("p", v, size=2) for v in ("1?", "2?")]))
    assert all(a.kind == "unparsed" and a.fallback and a.unparsed == 1 for a in answers)


@pytest.mark.parametrize("name", NAMES)
def test_every_strategy_works(name):
    svc, _ = service(strategy=name)
    answers = run(ask(svc, [member("p", v) for v in (4, 1, 3, 2)]))
    rewards = [a.reward for a in answers]
    assert all(a.kind is None for a in answers), name
    assert rewards[0] == max(rewards) and rewards[1] == min(rewards), (name, rewards)
    if name == "reference":  # no waiting: each rollout against the reference on arrival
        assert all(a.group == 1 for a in answers) and rewards == [1, 0, 1, 0]


def test_pending_is_bounded_and_bad_sizes_are_refused():
    svc = CohortService(
        Scorer(ScriptedJudge(ranker)), RewardConfig(group={"timeout_s": 0.1}), max_pending=3
    )

    async def go():
        held = [asyncio.create_task(svc.reward(member(k, 1))) for k in "abc"]
        await asyncio.sleep(0)
        assert svc.pending == 3
        with pytest.raises(Overloaded):
            await svc.reward(member("d", 1))
        with pytest.raises(ValueError, match="positive integer"):
            await svc.reward(member("e", 1, size=0))
        with pytest.raises(ValueError, match="over max_group_size"):
            await svc.reward(member("e", 1, size=10_000))
        return await asyncio.gather(*held)

    answers = run(go())
    assert [a.kind for a in answers] == ["alone"] * 3 and svc.pending == 0
    assert svc.stats["members"] == 3  # the refused ones were never held


def test_closing_answers_every_held_member():
    svc, _ = service(group={"timeout_s": 100}, service={"timeout_s": 300})

    async def go():
        held = [asyncio.create_task(svc.reward(member("p", v))) for v in (1, 2)]
        await asyncio.sleep(0.01)
        await svc.aclose()
        return await asyncio.gather(*held)

    answers = run(go())
    assert all(a.kind == "error" and "stopped" in a.error for a in answers)
    with pytest.raises(Overloaded, match="shutting down"):
        svc.check(4)


def test_the_table_closes_cohorts_by_size_then_by_deadline():
    table = CohortTable(group_timeout_s=10.0, max_pending=100)
    assert table.next_deadline() is None
    assert table.add(member("a", 1, size=2), "t1", now=0.0) is None
    assert table.add(member("b", 1, size=3), "t2", now=1.0) is None
    closed = table.add(member("a", 2, size=2), "t3", now=2.0)
    assert closed is not None and closed.tickets == ["t1", "t3"] and table.held == 3
    table.finish(closed)  # answered: no longer held (once)
    table.finish(closed)
    assert table.held == 1 and table.held_bytes > 0
    assert table.next_deadline() == 11.0 and table.due(10.9) == []
    [short] = table.due(11.0)
    assert short.tickets == ["t2"] and table.held == 1 and len(table) == 0
    table.finish(short)
    assert table.held == table.held_bytes == 0
    # a long prompt is kept once, under a fixed-size key
    table.add(member("x" * 100_000, 1, size=2), "t", now=0.0)
    assert all(len(key) == 64 for key in table._open)


def test_many_cohorts_stay_linear():
    """100,000 members of 25,000 groups: each add and close is O(1) (a hang guard only)."""
    table = CohortTable(group_timeout_s=1.0, max_pending=200_000)
    closed = 0
    for i in range(100_000):
        cohort = table.add(member(f"k{i % 25_000}", 1), i, now=i * 1e-6)
        if cohort is not None:
            table.finish(cohort)
            closed += 1
    assert closed == 25_000 and table.held == 0


def test_cohort_logs_carry_the_judge_health_keys_of_every_integration():
    from rmr1_plugins.rewards.health import Tally

    svc, _ = service()  # a perfect ranker
    answers = run(ask(svc, [member("p", v) for v in (1, 2, 3, 4)]))
    fallback = run(ask(service(lambda user, i: "no verdict")[0], [member("q", 1, size=1)]))
    neutral = Tally().sample_logs()
    for answer in [*answers, *fallback]:
        assert set(neutral) <= set(answer.logs())
    # a perfect ranker over 4 members: every judgment parsed, none cut
    assert all(a.logs()["rmr1_health/unparsed"] == 0.0 for a in answers)
    assert all(a.logs()["rmr1_health/length_corr"] == 0.0 for a in answers)  # equal lengths


def test_a_group_that_cannot_be_judged_is_bad_input_not_unparsed():
    """A prompt ending in an assistant turn: the engine refuses the group, as in veRL and TRL."""
    svc, backend = service()
    chat = [{"role": "user", "content": "Pick."}, {"role": "assistant", "content": "ok"}]
    answers = run(ask(svc, [member("p", v, size=2, prompt=chat) for v in (1, 2)]))
    assert all(a.kind == "bad_input" and a.fallback for a in answers)
    assert all("must end with a user turn" in a.error for a in answers)
    logs = answers[0].logs()
    assert logs["rmr1_bad_input"] == logs["rmr1_fallback"] == 1.0
    assert logs["rmr1_unparsed"] == logs["rmr1_group"] == 0.0
    assert backend.batches == []


def test_a_clipped_response_is_logged_in_cohort_mode():
    from rmr1_plugins.rewards.inputs import Sample
    from rmr1_plugins.serve.cohort import openrlhf_rewards

    slot_a = "<eval>compared</eval>\n<answer>[[A]]</answer>"  # the cut text has no number
    svc, _ = service(lambda user, _: slot_a, group={"size": 2}, inputs={"max_response_chars": 8})
    prompt = "Pick a number."
    samples = [
        Sample(prompt + " answer 1 and more words", prompt),
        Sample(prompt + " answer 2", prompt),
    ]
    payload, status = run(openrlhf_rewards(svc, samples))
    assert status == 200
    assert payload["extra_logs"]["rmr1_clipped"] == [1.0, 0.0]
    assert payload["extra_logs"]["rmr1_fallback"] == [0.0, 0.0]


class GatedRanker(Backend):
    """A judge that serializes its calls and counts them; the first waits for ``gate``, as
    calls queue behind a busy engine (a per-call cost, without a clock)."""

    name = "gated"

    def __init__(self) -> None:
        super().__init__("gated")
        self.gate = asyncio.Event()
        self.lock = asyncio.Lock()
        self.calls = 0

    def generate(self, conversations, params):
        raise AssertionError("only agenerate")

    async def agenerate(self, conversations, params):
        async with self.lock:
            await self.gate.wait()
            self.calls += 1
            answers = [ranker(c[-1]["content"], 0) for c in conversations]
            return [[Generation(a, "stop")] * params.num_samples for a in answers]


async def until(done):
    while not done():  # yields to the loop (and the prepare threads' callbacks); no clock
        await asyncio.sleep(0)


def reference_load(judge, config, prompts, size):
    from rmr1_plugins.rewards.inputs import Sample

    def turn(i):  # every prompt its own: the scorer's cache shares nothing between them
        return f"<|im_start|>user\nPick a number, {i}.<|im_end|>\n<|im_start|>assistant\n"

    service = RewardService(Scorer(judge), config)

    async def go():
        await service.start(warmup=False)
        samples = [
            Sample(f"{turn(i)}answer {j}<|im_end|>", turn(i), "answer 2.5")
            for i in range(prompts)
            for j in range(size)
        ]
        tasks = [asyncio.ensure_future(service.rewards([s])) for s in samples]
        await until(lambda: service.stats["samples"] == len(samples))
        judge.gate.set()
        answers = [a for [a] in await asyncio.gather(*tasks)]
        await service.aclose()
        return answers

    return run(go())


def cohort_load(judge, config, prompts, size):
    svc = CohortService(Scorer(judge), config)

    async def go():
        tasks = [
            asyncio.ensure_future(
                svc.reward(member(f"p{i}", j, size, None, f"Pick a number, {i}."))
            )
            for i in range(prompts)
            for j in range(size)
        ]
        await until(lambda: svc.stats["members"] == len(tasks))
        judge.gate.set()
        answers = await asyncio.gather(*tasks)
        await svc.aclose()
        return answers

    return run(go())


@pytest.mark.parametrize(
    ("strategy", "batch", "reference_batch"), [("round-robin", 3000, 2000), ("circular", 50, 50)]
)
def test_cohorts_share_engine_calls_like_reference_samples(strategy, batch, reference_batch):
    """500 prompts x 4 single-sample requests against a judge that serializes its calls: cohort
    mode makes at most 1.1x the engine calls of reference mode, and nothing times out. (Before
    the cohorts went through the batching service: one call per cohort and round, 500+.)
    Round-robin's 6 pairs a group take 1.5x the judgments: calls match where a batch holds them
    (one call each); circular's 4 match reference mode's 4 at the same batch size. Batches are
    sent when full (a long max_wait_ms): the counts do not depend on how fast pairs are built."""
    config = RewardConfig(
        strategy=strategy,
        service={"max_batch_size": batch, "max_wait_ms": 60_000, "timeout_s": 300},
        group={"timeout_s": 50},
    )
    reference_judge, cohort_judge = GatedRanker(), GatedRanker()
    service = config.service.model_copy(update={"max_batch_size": reference_batch})
    update = {"strategy": "reference", "service": service}
    plain = reference_load(reference_judge, config.model_copy(update=update), 500, 4)
    grouped = cohort_load(cohort_judge, config, 500, 4)
    assert not any(a.error for a in plain) and not any(a.fallback for a in grouped)
    assert all(a.kind is None and a.group == 4 for a in grouped)
    assert [a.reward for a in grouped[:4]] == [a.reward for a in grouped[-4:]]
    assert cohort_judge.calls <= 1.1 * reference_judge.calls, (
        cohort_judge.calls,
        reference_judge.calls,
    )


def test_a_late_member_is_answered_at_once_never_held_for_a_second_wait():
    svc, _ = service(group={"timeout_s": 0.05}, service={"timeout_s": 300})

    async def go():
        [first] = await ask(svc, [member("p", 3, size=2)])  # its partner is late
        late = svc.submit(member("p", 2, size=2))
        held = len(svc.table)  # before: a new cohort, waiting group_timeout_s again
        second = await late
        after = svc.submit(member("p", 4, size=2))  # owed nothing more: a new cohort
        return first, second, held, len(svc.table), await after

    first, second, held, opened, third = run(go())
    assert (first.kind, first.late, first.reward) == ("alone", False, 1.0)
    assert (second.kind, second.late, second.reward) == ("alone", True, 0.0)  # vs "answer 2.5"
    assert second.logs()["rmr1_split"] == second.logs()["rmr1_reference"] == 1.0
    assert held == 0 and opened == 1 and not third.late and svc.stats["late"] == 1
    svc, _ = service(group={"timeout_s": 0.05})

    async def without_reference():
        [alone] = await ask(svc, [member("q", 1, size=2, reference=None)])
        return alone, await svc.reward(member("q", 5, size=2, reference=None))

    alone, answer = run(without_reference())
    assert alone.kind == "no_reference" and not alone.late
    assert answer.late and answer.kind == "no_reference" and "late" in answer.error


def test_the_table_counts_late_members_by_what_the_cohort_missed():
    table = CohortTable(group_timeout_s=1.0, late_s=10.0)
    table.add(member("a", 1, size=3), "t1", now=0.0)
    [short] = table.due(1.0)  # 2 of 3 missing
    assert len(short.responses) == 1
    assert [table.add(member("a", v, size=3), v, now=2.0).late for v in (2, 3)] == [True, True]
    assert table.add(member("a", 4, size=3), "t4", now=2.0) is None  # a new cohort
    table.add(member("b", 1, size=2), "t", now=20.0)
    table.due(21.0)
    assert table.add(member("b", 2, size=2), "t", now=32.0) is None  # past late_s: new


def test_a_repeated_id_gets_its_answer_and_is_never_counted_twice():
    svc, backend = service(group={"timeout_s": 100}, service={"timeout_s": 300})

    async def go():
        first = svc.submit(replace(member("p", 1, size=2), id="p:0"))
        retry = svc.submit(replace(member("p", 1, size=2), id="p:0"))  # a client retry
        assert svc.pending == 1 and len(svc.table) == 1
        other = svc.submit(replace(member("p", 2, size=2), id="p:1"))
        answers = await asyncio.gather(first, retry, other)
        again = await svc.submit(replace(member("p", 1, size=2), id="p:0"))  # answered
        return answers, again

    (first, retry, other), again = run(go())
    assert first.reward == retry.reward == again.reward == 0.0 and other.reward == 1.0
    assert first.group == other.group == 2 and first.kind is None
    assert svc.stats["members"] == 2 and svc.stats["repeats"] == 2
    assert sum(len(b) for b in backend.batches) == 1


def test_held_text_is_bounded_by_bytes_before_anything_is_accepted():
    svc, _ = service(
        group={"timeout_s": 100}, service={"timeout_s": 300, "max_pending_bytes": 100_000}
    )
    big = "9" * 40_000

    async def go():
        held = [svc.submit(member(k, big)) for k in "ab"]
        with pytest.raises(Overloaded, match="max_pending_bytes 100000"):
            svc.submit(member("c", big))
        assert svc.stats["members"] == 2 and 80_000 < svc.table.held_bytes < 100_000
        svc.submit(member("d", 1))  # a small one still fits
        await svc.aclose()
        return await asyncio.gather(*held)

    assert all(a.kind == "error" for a in run(go()))
    assert svc.table.held == svc.table.held_bytes == 0


def test_cohort_pairs_add_to_the_judge_health_and_the_hard_pairs(tmp_path):
    from rmr1_plugins.rewards.hard_pairs import writer_for

    path = tmp_path / "hard.jsonl"
    svc, _ = service(lambda user, i: "<answer>[[A]]</answer>", hard_pairs={"path": str(path)})
    svc.judge.scorer.order = "both"  # a judge that always says A flips with the order
    answers = run(ask(svc, [member("p", v) for v in (1, 2, 3, 4)]))
    assert all(a.kind is None for a in answers)
    assert svc.judge.health.pairs == 6 and svc.judge.stats["pairs"] == 6
    writer_for(svc.config).flush()
    rows = path.read_text().splitlines()
    assert len(rows) == 6 and all('"hard-order_flip-' in row for row in rows)


@pytest.mark.parametrize(
    ("size", "expected", "reference", "on_split", "plan"),
    [
        (4, 4, False, "partial", ("whole", "round-robin", False, None)),
        (3, 4, False, "partial", ("partial", "round-robin", True, None)),
        (1, 4, True, "partial", ("alone", "reference", True, None)),
        (1, 4, False, "partial", ("fallback", None, True, "no_reference")),
        (1, 1, True, "partial", ("alone", "reference", False, None)),
        (3, 4, True, "reference", ("alone", "reference", True, None)),
        (3, 4, True, "drop", ("fallback", None, True, "dropped")),
    ],
)
def test_the_group_plan(size, expected, reference, on_split, plan):
    from rmr1_plugins.rewards.groups import plan_group
    from rmr1_plugins.rewards.strategies import resolve_strategy

    got = plan_group(
        size, expected, resolve_strategy("round-robin"), has_reference=reference, on_split=on_split
    )
    name = got.strategy.name if got.strategy is not None else None
    assert (got.kind, name, got.split, got.fallback) == plan


def test_the_group_plan_refuses_a_split_group_when_asked_and_ignores_it_for_reference():
    from rmr1_plugins.rewards.groups import SplitGroup, plan_group
    from rmr1_plugins.rewards.strategies import resolve_strategy

    with pytest.raises(SplitGroup, match="got 3 of 4"):
        plan_group(3, 4, resolve_strategy("pivot"), has_reference=True, on_split="error")
    plan = plan_group(3, 4, resolve_strategy("reference"), has_reference=True, on_split="error")
    assert (plan.kind, plan.split, plan.reference) == ("whole", False, True)


def test_groups_are_scored_from_a_reward_config():
    from rmr1_plugins.rewards.engine import Group
    from rmr1_plugins.rewards.groups import scoring

    config = RewardConfig(strategy="pivot", on_unparsed="exclude", seed=3)
    groups = [Group("Pick a number.", ["answer 1", "answer 2?", "answer 3"])]
    scorer, run_ = Scorer(ScriptedJudge(ranker)), scoring(groups, config)
    while not run_.done:
        run_.feed(scorer.score(run_.examples()))
    [judged] = run_.rewards()
    assert None in judged.rewards  # "?": excluded (on_unparsed=exclude)


class Clock:
    """A fake monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def budgets_of(deadline):
    """The judge budget of a cohort opened at t=0 and complete at t=100 (timeout_s 5)."""
    clock, budgets = Clock(), []
    config = RewardConfig(group={"timeout_s": 1000}, service={"timeout_s": 5.0})
    svc = CohortService(Scorer(ScriptedJudge(ranker)), config, clock=clock, deadline=deadline)

    async def rewards(cohort, budget):
        budgets.append(budget)
        return [svc._fallback("error", "not judged in this test")]

    svc._rewards = rewards

    async def go():
        first = svc.submit(member("p", 1, size=2))
        clock.now = 100.0
        await asyncio.gather(first, svc.submit(member("p", 2, size=2)))
        await svc.aclose()

    run(go())
    return svc, budgets


def test_the_judge_deadline_counts_from_the_close_when_asked():
    """deadline="close" (the veRL manager): reward.service.timeout_s after the cohort closed, and
    the group.timeout_s wait is not capped; the default (rmr1 serve) counts from the first
    member."""
    svc, [budget] = budgets_of("close")
    assert budget == 5.0 and svc.group_timeout_s == 1000
    svc, [budget] = budgets_of("first")
    assert budget == pytest.approx(0.001) and svc.group_timeout_s == 2.5


def test_a_cancelled_caller_leaves_its_member_held_for_the_retry():
    svc, backend = service(group={"timeout_s": 100}, service={"timeout_s": 300})
    first = replace(member("p", 1, size=2), id="p:0")

    async def go():
        caller = asyncio.ensure_future(svc.reward(first))
        await asyncio.sleep(0)  # the caller submits, then its client goes away
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        retry = svc.submit(first)
        assert svc.stats["members"] == 1 and svc.stats["repeats"] == 1
        other = svc.submit(replace(member("p", 2, size=2), id="p:1"))
        return await asyncio.gather(retry, other)

    retry, other = run(go())
    assert (retry.reward, other.reward, retry.group) == (0.0, 1.0, 2)
    assert svc.stats["members"] == 2 and sum(len(b) for b in backend.batches) == 1


def test_a_reissued_id_with_a_new_response_is_a_new_member():
    """veRL re-issues an interrupted rollout under its "<uid>:<session_id>" with a new response:
    it gets its own reward, never the old response's."""
    svc, _ = service(group={"timeout_s": 100}, service={"timeout_s": 300})

    async def go():
        first = await asyncio.gather(
            svc.submit(replace(member("p", 1, size=2), id="p:0")),
            svc.submit(replace(member("p", 2, size=2), id="p:1")),
        )
        again = await asyncio.gather(
            svc.submit(replace(member("p", 3, size=2), id="p:0")),  # re-issued: a new response
            svc.submit(replace(member("p", 2, size=2), id="p:9")),
        )
        repeat = await svc.submit(replace(member("p", 3, size=2), id="p:0"))
        return first, again, repeat

    (old, _), (new, _), repeat = run(go())
    assert (old.reward, new.reward, repeat.reward) == (0.0, 1.0, 1.0)
    assert svc.stats["members"] == 4 and svc.stats["reissued"] == 1 and svc.stats["repeats"] == 1


def test_a_reissued_id_replaces_a_held_one():
    # A rollout re-issued (new response, same id) while its old member waits takes the old
    # member's place: the group keeps its size, is judged on the new response, and the old
    # member's caller gets the new answer.
    svc, _ = service(group={"timeout_s": 100}, service={"timeout_s": 300})

    async def go():
        old = svc.submit(replace(member("p", 1, size=2), id="p:0"))
        new = svc.submit(replace(member("p", 3, size=2), id="p:0"))  # before the old is judged
        sibling = svc.submit(replace(member("p", 2, size=2), id="p:1"))
        answers = await asyncio.gather(old, new, sibling)
        return answers, await svc.submit(replace(member("p", 3, size=2), id="p:0"))

    (old, new, sibling), repeat = run(go())
    assert (new.reward, sibling.reward) == (1.0, 0.0)  # {answer 3, answer 2}: whole
    assert old.reward == new.reward and repeat.reward == new.reward
    assert new.kind is None and sibling.kind is None and not new.split
    assert svc.stats["members"] == 2 and svc.stats["reissued"] == 1
    assert svc.stats["complete_cohorts"] == 1 and svc.table.held == 0


def test_a_members_on_split_decides_its_cohort_closed_short():
    """rmr1 serve applies the on_split a client sends (the veRL manager's reference or drop)."""
    from rmr1_plugins.serve.cohort import CohortBodyError, parse_member

    body = {"key": "p", "size": 3, "prompt": "Pick a number.", "response": "answer 3"}
    assert parse_member(body).on_split is None
    assert parse_member({**body, "on_split": "drop"}).on_split == "drop"
    with pytest.raises(CohortBodyError, match="field 'on_split'"):
        parse_member({**body, "on_split": "error"})
    svc, _ = service(group={"timeout_s": 0.05})  # the service's own rule: partial
    asked = [
        replace(member(key, v, size=3), on_split=rule)
        for key, rule in (("a", "drop"), ("b", "reference"), ("c", None))
        for v in (1, 3)
    ]
    answers = run(ask(svc, asked))
    assert [a.kind for a in answers] == ["dropped"] * 2 + ["alone"] * 2 + ["partial"] * 2
    with pytest.raises(ValueError, match="on_split"):
        run(ask(svc, [replace(member("d", 1), on_split="error")]))
