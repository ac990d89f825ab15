"""The TRL reward functions with a scripted judge: grouping, formats, logging, pickling."""

import asyncio
import importlib
import json
import pickle
from collections import defaultdict
from pathlib import Path

import pytest
from rmr1_trl import (
    AsyncRMR1Reward,
    RMR1Reward,
    SplitGroupError,
    TRLVerifiableReward,
    find_groups,
)
from trl.trainer.utils import get_callable_name, is_async_callable

from rmr1_plugins import ConfigError, Scorer
from rmr1_plugins.rewards.strategies import Strategy
from rmr1_plugins.settings import RewardSettings, load_reward_settings
from rmr1_plugins.testing import AlwaysA, LongerWins

# One reward: section with the keys of every integration, shared by the three adapters' tests.
SHARED = (Path(__file__).parents[3] / "tests" / "data" / "shared_reward_config.yaml").read_text()


class FakeTrainer:
    """Stands in for GRPOTrainer: TRL hands reward functions its bound _log_metric."""

    def __init__(self, num_generations=None, training=True):
        self.num_generations = num_generations
        self.num_generations_eval = 1
        self.model = type("M", (), {"training": training})()
        self.metrics = defaultdict(list)
        self.extra = defaultdict(list)

    def _log_metric(self, name, value):
        self.metrics[name].append(value)

    def _log_completion_extra(self, column, values):
        self.extra[column].extend(values)

    def kwargs(self):
        return {"log_metric": self._log_metric, "log_extra": self._log_completion_extra}


def batch(*groups):
    """(prompts, completions) for groups given as (prompt, [completions])."""
    prompts = [p for p, cs in groups for _ in cs]
    completions = [c for _, cs in groups for c in cs]
    return prompts, completions


def test_find_groups():
    runs = find_groups(["a", "a", "b", "b", "b", "b", "c", "c"], 2)
    assert [(r.start, r.stop, r.split) for r in runs] == [
        (0, 2, False), (2, 4, False), (4, 6, False), (6, 8, False),
    ]  # fmt: skip
    runs = find_groups(["a", "b", "b", "b", "c", "c"], 2)
    assert [r.split for r in runs] == [True, True, False]
    runs = find_groups(["a", "b", "b", "b", "c", "c"], None)  # edges shorter than the longest
    assert [r.split for r in runs] == [True, False, True]
    assert find_groups([], None) == []


def test_groups_are_judged_in_one_batch_with_exact_rewards(judge):
    scorer, backend = judge
    reward = RMR1Reward(scorer=scorer, strategy="round-robin")
    prompts, completions = batch(("q1", ["aaa", "a", "aa"]), ("q2", ["bb", "bbbb", "b"]))
    trainer = FakeTrainer(num_generations=3)
    rewards = reward(prompts, completions, completion_ids=None, **trainer.kwargs())
    assert rewards == [1.0, 0.0, 0.5, 0.5, 1.0, 0.0]
    assert backend.batches == [6]
    assert trainer.metrics["rmr1_reward/judgments"] == [6.0]
    # the metrics contract's keys, batch means: every comparison parsed, no split group
    assert trainer.metrics["rmr1_unparsed_comparisons"] == [0.0]
    assert trainer.metrics["rmr1_split"] == [0.0]
    assert trainer.metrics["rmr1_health/orders_agree"] == [0.0]  # one order: not measured
    assert trainer.extra["rmr1_reward_verdicts"][0].startswith("vs #1: 1.00 (votes 1-0")
    assert trainer.extra["rmr1_reward_rationale"][0] == "<eval>1 vs 3</eval><answer>[[B]]</answer>"
    assert len(trainer.extra["rmr1_reward_rationale"]) == 6


def test_conversational_format_and_both_orders(judge):
    scorer, _ = judge
    scorer.order = "both"
    reward = RMR1Reward(scorer=scorer, strategy="round-robin")
    prompt = [{"role": "system", "content": "Be long."}, {"role": "user", "content": "Hi"}]
    completions = [[{"role": "assistant", "content": t}] for t in ("hello there", "hi")]
    trainer = FakeTrainer(num_generations=2)
    assert reward([prompt, prompt], completions, **trainer.kwargs()) == [1.0, 0.0]
    assert trainer.metrics["rmr1_reward/judgments"] == [2.0]
    assert trainer.metrics["rmr1_health/orders_agree"] == [1.0]


def test_reference_strategy_reads_the_reference_column(judge):
    scorer, _ = judge
    reward = RMR1Reward(scorer=scorer, strategy="reference", inputs={"reference_key": "gold"})
    prompts, completions = batch(("q", ["aaaa", "a"]))
    assert reward(prompts, completions, gold=["aa", "aa"]) == [1.0, 0.0]
    with pytest.raises(ValueError, match=r"needs the dataset column 'gold'.*columns \['answer'\]"):
        reward(prompts, completions, answer=["aa", "aa"], trainer_state=None)


def test_split_groups_error_or_fall_back(judge):
    scorer, backend = judge
    # num_generations=4 but this process got 2 + 4 + 2 rows: the edge groups are split
    q2 = ["w", "ww", "www", "wwww"]
    prompts, completions = batch(("q1", ["a", "aa"]), ("q2", q2), ("q3", ["cc", "c"]))
    trainer = FakeTrainer(num_generations=4)
    with pytest.raises(
        SplitGroupError,
        match=r"rows 0-1, rows 6-7 do not form whole groups of "
        r"num_generations=4.*per_device_train_batch_size \* steps_per_generation",
    ):
        RMR1Reward(scorer=scorer)(prompts, completions, **trainer.kwargs())

    dropped = RMR1Reward(scorer=scorer, group={"on_split": "drop"})(
        prompts, completions, **trainer.kwargs()
    )
    assert dropped[:2] == [None, None] and dropped[6:] == [None, None]
    assert dropped[2:6] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert trainer.metrics["rmr1_split"] == [0.5]  # 4 of the 8 rows

    reference = RMR1Reward(scorer=scorer, group={"on_split": "reference"})
    refs = ["b"] * 2 + ["unused"] * 4 + ["c"] * 2
    rewards = reference(prompts, completions, reference=refs, **trainer.kwargs())
    assert rewards[:2] == [0.0, 1.0]  # "a" loses to "b" (slot B wins ties), "aa" beats it
    assert rewards[6:] == [1.0, 0.5]  # "c" is the reference itself: a tie, not judged
    assert rewards[2:6] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    # "drop" judged q2's 6 pairs; this call found them in the scorer's cache and judged only
    # the split rows' 3 pairs ("c" against itself needs no judge)
    assert backend.batches == [6, 3]


def test_each_rows_outcome_is_the_core_group_plan(judge):
    """The rule for a group is plan_group's: a split group without a reference is no_reference
    (split, never judged), and the verdict column says why."""
    from rmr1_plugins.rewards.groups import plan_group
    from rmr1_plugins.rewards.strategies import resolve_strategy

    scorer, backend = judge
    q2 = ["w", "ww", "www", "wwww"]
    prompts, completions = batch(("q1", ["a", "aa"]), ("q2", q2), ("q3", ["cc", "c"]))
    trainer = FakeTrainer(num_generations=4)
    refs = [""] * 2 + ["unused"] * 4 + ["c"] * 2  # q1's split group has no reference
    reward = RMR1Reward(scorer=scorer, group={"on_split": "reference"})
    rewards = reward(prompts, completions, reference=refs, **trainer.kwargs())
    strategy = resolve_strategy("round-robin")
    plan = plan_group(2, 4, strategy, has_reference=False, on_split="reference")
    assert (plan.fallback, plan.split) == ("no_reference", True)
    assert rewards[:2] == [None, None] and rewards[6:] == [1.0, 0.5]
    verdicts = trainer.extra["rmr1_reward_verdicts"]
    assert all(plan.reason in v for v in verdicts[:2]) and "2 of 4" in verdicts[0]
    assert trainer.metrics["rmr1_no_reference"] == [0.25]  # 2 of the 8 rows
    assert trainer.metrics["rmr1_split"] == [0.5]  # q1's and q3's rows
    assert backend.batches == [6, 1]  # q2's pairs, then "cc" against "c" (none of q1's)


def test_group_size_comes_from_the_trainer_in_training_only(judge):
    scorer, _ = judge
    prompts, completions = batch(("q1", ["a", "aa"]), ("q2", ["b", "bb"]))
    reward = RMR1Reward(scorer=scorer)
    with pytest.raises(SplitGroupError):  # the trainer says 4 per prompt
        reward(prompts, completions, **FakeTrainer(num_generations=4).kwargs())
    assert reward(prompts, completions, **FakeTrainer(4, training=False).kwargs()) == [None] * 4
    assert reward(prompts, completions) == [0.0, 1.0, 0.0, 1.0]  # no trainer: runs of 2


def test_group_size_setting_does_not_override_the_eval_group_size(judge):
    scorer, _ = judge
    prompts, completions = batch(("q1", ["a", "aa", "aaa"]), ("q2", ["b", "bb", "bbb"]))
    reward = RMR1Reward(scorer=scorer, group={"size": 2})  # the training groups
    evaluation = FakeTrainer(2, training=False)
    evaluation.num_generations_eval = 3
    assert reward(prompts, completions, **evaluation.kwargs()) == [0.0, 0.5, 1.0] * 2
    with pytest.raises(SplitGroupError):  # in training, group.size=2 holds: runs of 3 split
        reward(prompts, completions, **FakeTrainer(2).kwargs())


def test_unjudgeable_rows_get_none_and_unparsed_are_counted(judge, caplog):
    scorer, _ = judge
    bad = [{"role": "tool", "content": "x"}, {"role": "user", "content": "q"}]
    prompts = [bad, bad, "q2", "q2"]
    completions = ["a", "aa", "??", "b"]
    trainer = FakeTrainer(num_generations=2)
    rewards = RMR1Reward(scorer=scorer)(prompts, completions, **trainer.kwargs())
    assert rewards == [None, None, 0.5, 0.5]
    assert "role 'tool'" in caplog.text and "rows 0-1" in caplog.text
    # rows 2-3 share one comparison with no verdict; rows 0-1 were never judged
    assert trainer.metrics["rmr1_unparsed_comparisons"] == [0.5]
    assert trainer.metrics["rmr1_bad_input"] == [0.5]
    assert "role 'tool'" in trainer.extra["rmr1_reward_verdicts"][0]


def test_async_variant_is_detected_by_trl_and_agrees(judge):
    scorer, _ = judge
    prompts, completions = batch(("q1", ["aaa", "a", "aa"]))
    sync = RMR1Reward(scorer=scorer)
    asynchronous = AsyncRMR1Reward(scorer=scorer)
    assert is_async_callable(asynchronous) and not is_async_callable(sync)
    assert get_callable_name(asynchronous) == get_callable_name(sync) == "rmr1_reward"
    assert asyncio.run(asynchronous(prompts, completions)) == sync(prompts, completions)


def test_pickle_keeps_config_and_drops_the_loaded_judge(tmp_path):
    config = tmp_path / "rmr1.yaml"
    config.write_text("backend: {name: constant}\norder: both\nreward: {strategy: knockout}\n")
    reward = RMR1Reward(config, name="judge", on_unparsed="loss")
    prompts, completions = batch(("q", ["a", "bb"]))
    first = reward(prompts, completions)
    assert reward._scorer._scorer is not None  # loaded by the call
    clone = pickle.loads(pickle.dumps(reward))
    assert clone.__name__ == "judge" and clone._scorer._scorer is None
    assert clone.options.strategy == "knockout" and clone.options.on_unparsed == "loss"
    assert clone.config.scorer.order == "both"
    assert clone(prompts, completions) == first
    module = importlib.import_module("rmr1_trl")
    assert pickle.loads(pickle.dumps(module.rmr1_reward)).__name__ == "rmr1_reward"
    assert pickle.loads(pickle.dumps(module.rmr1_reward_async)).__name__ == "rmr1_reward"


def test_module_instance_reads_its_config_from_the_environment(tmp_path, monkeypatch):
    config = tmp_path / "rmr1.yaml"
    config.write_text("backend: {name: constant}\nreward: {strategy: pivot}\n")
    monkeypatch.setenv("RMR1_CONFIG", str(config))
    monkeypatch.setenv("RMR1_REWARD__ON_UNPARSED", "exclude")
    monkeypatch.setenv("RMR1_SAMPLING__MAX_NEW_TOKENS", "16")
    # what `trl grpo --reward_funcs rmr1_trl.rmr1_reward` does
    module = importlib.import_module("rmr1_trl")
    reward = pickle.loads(pickle.dumps(module.rmr1_reward))
    assert reward.options.strategy == "pivot" and reward.options.on_unparsed == "exclude"
    assert reward.config.scorer.sampling.max_new_tokens == 16
    rewards = reward(["q", "q", "q"], ["a", "b", "c"])
    assert sorted(rewards) == [0.5, 1.0, 1.0]  # the constant judge always prefers slot A


def test_bad_config_is_a_clear_error(tmp_path):
    config = tmp_path / "rmr1.yaml"
    config.write_text("reward: {strategy: round-robin, on_unparsed: maybe}\n")
    with pytest.raises(ConfigError, match=r"reward\.on_unparsed: Input should be 'tie', 'loss'"):
        RMR1Reward(config)(["q"], ["a"])
    assert isinstance(load_reward_settings(None), RewardSettings)


def test_a_config_file_shared_with_the_reward_service(tmp_path):
    config = tmp_path / "rmr1.yaml"
    config.write_text(SHARED)
    reward = RMR1Reward(config)
    assert sorted(reward(["q", "q", "q"], ["a", "b", "c"])) == [0.5, 1.0, 1.0]
    assert (reward.options.strategy, reward.options.group.on_split) == ("pivot", "drop")
    assert reward.options.service.timeout_s == 60  # read, unused by TRL
    config.write_text(SHARED + "  stratgy: knockout\n")
    with pytest.raises(ConfigError, match=r"reward\.stratgy: unknown key\n  \(in .*rmr1.yaml\)"):
        RMR1Reward(config)(["q"], ["a"])


def test_verifiable_reward_for_training_a_judge():
    reward = TRLVerifiableReward()
    completions = [
        [{"role": "assistant", "content": "<rubric>r</rubric><answer>[[A]]</answer>"}],
        "<answer>[[A]]</answer>",
        "<answer>[[B]]</answer>",
    ]
    assert reward(["p"] * 3, completions, winner=["model_a", "model_b", "tie"]) == [1.0, -1.0, None]
    with pytest.raises(ValueError, match="needs the dataset column 'winner'"):
        reward(["p"], ["x"], label=["A"])
    strict = TRLVerifiableReward("strict", label_key="label")
    assert strict(["p"], ["<answer>[[B]]</answer> and more text" * 5], label=["B"]) == [1.0]


def test_rewards_scale_onto_loss_win(judge):
    scorer, _ = judge
    prompts, completions = batch(("q1", ["aaa", "a", "aa"]))
    signed = RMR1Reward(scorer=scorer, win=1.0, loss=-1.0)
    assert signed(prompts, completions) == [1.0, -1.0, 0.0]
    bt = RMR1Reward(scorer=scorer, strategy="bradley-terry", win=1.0, loss=-1.0)
    r = bt(prompts, completions)
    assert r[0] > r[2] > r[1] and sum(r) == pytest.approx(0)  # log-strengths, not rescaled


class Broken:
    order = "given"

    def score(self, examples):
        raise ConnectionError("judge server refused the connection")


def test_a_failed_judge_gives_none_and_is_logged(caplog):
    trainer = FakeTrainer(num_generations=2)
    prompts, completions = batch(("q1", ["a", "aa"]), ("q2", ["b", "bb"]))
    rewards = RMR1Reward(scorer=Broken())(prompts, completions, **trainer.kwargs())
    assert rewards == [None] * 4
    assert "judge server refused the connection" in caplog.text
    assert trainer.metrics["rmr1_fallback"] == [1.0] and trainer.metrics["rmr1_error"] == [1.0]
    assert trainer.extra["rmr1_reward_verdicts"][0].startswith("the judge failed (ConnectionError")


def test_judge_health_is_logged_per_call_for_a_judge_with_known_bias(tmp_path):
    """Always-A in both orders: slot-A rate 1, order consistency 0, every pair a hard pair."""
    hard = tmp_path / "hard.jsonl"
    scorer = Scorer(AlwaysA(options={"prob": 0.9}), order="both")
    trainer = FakeTrainer(num_generations=3)
    reward = RMR1Reward(scorer=scorer, hard_pairs={"path": str(hard)})
    prompts, completions = batch(("q1", ["x", "yy", "zzz"]), ("q2", ["a", "bb", "ccc"]))
    assert reward(prompts, completions, **trainer.kwargs()) == [0.5] * 6
    health = {k: v for k, v in trainer.metrics.items() if k.startswith("rmr1_health/")}
    assert health == {
        "rmr1_health/slot_a": [1.0],
        "rmr1_health/orders_agree": [0.0],
        "rmr1_health/unparsed": [0.0],
        "rmr1_health/truncated": [0.0],
        "rmr1_health/confidence": [pytest.approx(0.9)],
        "rmr1_health/invalid_probs": [0.0],
        # the batch means of the per-sample values (the metrics contract): what no comparison
        # measured keeps its neutral value (no verdict, equal rewards)
        "rmr1_health/longer_wins": [0.5],
        "rmr1_health/length_corr": [0.0],
    }
    from rmr1_plugins.rewards.hard_pairs import writer_for

    writer_for(reward.options).flush()
    rows = [json.loads(line) for line in hard.read_text().splitlines()]
    assert len(rows) == 6 and all(r["id"].startswith("hard-order_flip-") for r in rows)

    longer = FakeTrainer(num_generations=3)
    RMR1Reward(scorer=Scorer(LongerWins(), order="both"))(prompts, completions, **longer.kwargs())
    assert longer.metrics["rmr1_health/slot_a"] == [0.5]
    assert longer.metrics["rmr1_health/orders_agree"] == [1.0]
    assert longer.metrics["rmr1_health/longer_wins"] == [1.0]
    assert longer.metrics["rmr1_health/length_corr"] == [pytest.approx(1.0)]
    assert longer.metrics["rmr1_health/confidence"] == [0.5]  # no probabilities: neutral


def test_the_metrics_contract_is_logged_as_batch_means_for_every_kind_of_row():
    from rmr1_plugins.rewards.metrics import KEYS

    trainer = FakeTrainer(num_generations=2)
    prompts, completions = batch(("q1", ["a", "aa"]), ("q2", ["b", "bb"]), ("q3", ["c"]))
    reward = RMR1Reward(scorer=Scorer(LongerWins()), group={"on_split": "drop"})
    assert reward(prompts, completions, **trainer.kwargs()) == [0.0, 1.0, 0.0, 1.0, None]
    logged = {k: v for k, v in trainer.metrics.items() if not k.startswith("rmr1_reward/")}
    assert list(logged) == list(KEYS)
    assert logged["rmr1_fallback"] == logged["rmr1_dropped"] == logged["rmr1_split"] == [0.2]
    assert logged["rmr1_group"] == [pytest.approx(8 / 5)]  # 2 + 2 + 2 + 2 + 0 (dropped)
    failed = FakeTrainer(num_generations=2)
    RMR1Reward(scorer=Broken())(prompts[:4], completions[:4], **failed.kwargs())
    assert list(k for k in failed.metrics if not k.startswith("rmr1_reward/")) == list(KEYS)
    assert failed.metrics["rmr1_error"] == failed.metrics["rmr1_fallback"] == [1.0]


def test_a_system_turn_reaches_the_judge_as_in_every_trainer():
    """TRL's conversational prompt with a system turn gives the judge the Python API's prompt."""
    from rmr1_plugins.rewards.engine import Group, score_groups

    chat = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "2+2?"}]
    api, trl = LongerWins(), LongerWins()
    score_groups(Scorer(api), [Group(chat, ["4"], reference="5")], "reference")
    reward = RMR1Reward(scorer=Scorer(trl), strategy="reference")
    reward([chat], [[{"role": "assistant", "content": "4"}]], reference=["5"])
    assert trl.seen == api.seen and len(api.seen) == 1
    assert "Be terse.\n\n2+2?" in api.seen[0][-1]["content"]


def test_a_group_of_one_is_judged_against_the_reference_column(caplog):
    """Evaluation with num_generations_eval=1 (or a prompt seen once): each row alone."""
    reward = RMR1Reward(scorer=Scorer(LongerWins()), strategy="round-robin")
    prompts, completions = batch(("q1", ["aaa"]), ("q2", ["a"]))
    evaluation = FakeTrainer(2, training=False)  # num_generations_eval = 1
    rewards = reward(prompts, completions, reference=["aa", "aa"], **evaluation.kwargs())
    assert rewards == [1.0, 0.0]
    logged = evaluation.metrics
    assert logged["rmr1_reference"] == logged["rmr1_group"] == [1.0]
    assert logged["rmr1_unparsed"] == logged["rmr1_fallback"] == logged["rmr1_split"] == [0.0]

    alone = FakeTrainer(2, training=False)
    assert reward(prompts, completions, **alone.kwargs()) == [None, None]
    assert "needs a reference answer" in caplog.text  # not silent
    assert alone.metrics["rmr1_no_reference"] == alone.metrics["rmr1_fallback"] == [1.0]
    assert alone.metrics["rmr1_unparsed"] == alone.metrics["rmr1_group"] == [0.0]


def test_an_excluded_group_logs_the_fallback_values_of_the_contract():
    trainer = FakeTrainer(num_generations=2)
    reward = RMR1Reward(scorer=Scorer(LongerWins()), on_unparsed="exclude")
    # "??" leaves the scripted judge without a verdict: the one comparison is excluded
    assert reward(*batch(("q", ["??", "b"])), **trainer.kwargs()) == [None, None]
    assert trainer.metrics["rmr1_unparsed"] == trainer.metrics["rmr1_fallback"] == [1.0]
    assert trainer.metrics["rmr1_group"] == trainer.metrics["rmr1_reference"] == [0.0]  # was 2


class Picky(Strategy):
    """Judges the first two completions; fails (a plugin's bug) when the first one wins."""

    name = "picky"

    def play(self, size, rng):
        [scores] = yield [(0, 1)]
        if scores[0] > scores[1]:
            raise ValueError("math domain error")
        return [scores[0], scores[1], *([0.5] * (size - 2))]

    def comparisons(self, size):
        return 1


def test_a_group_whose_strategy_fails_costs_only_its_own_rows(judge, monkeypatch):
    # Before: the exception left score_groups, and every group of the step got None.
    from rmr1_plugins.plugins import Entry, get_plugins

    registry = get_plugins().registries["strategies"]
    monkeypatch.setitem(registry.entries, "picky", Entry("picky", Picky, "this test"))
    scorer, _ = judge
    reward = RMR1Reward(scorer=scorer, strategy="picky")
    prompts, completions = batch(("q1", ["aaa", "a"]), ("q2", ["b", "bbbb"]))
    rewards = reward(prompts, completions, **FakeTrainer(num_generations=2).kwargs())
    assert rewards == [None, None, 0.0, 1.0]  # q1's strategy failed; q2 judged as usual
