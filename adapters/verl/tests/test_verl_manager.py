"""The rmr1 reward manager inside veRL's real reward-loop code (no Ray, no GPU)."""

from __future__ import annotations

import asyncio
import json
import math
import random
from importlib.metadata import entry_points

import pytest

from rmr1_plugins import Scorer
from rmr1_plugins.rewards.metrics import KEYS as CONTRACT
from rmr1_plugins.testing import LongerWins, tiny_llama
from rmr1_plugins.testing.verl import rollouts, verl_config

KEYS = {"score", *CONTRACT}  # the metrics contract (rmr1_plugins.rewards.metrics)
GROUPS = [
    ("u1", "Name a fruit.", "apple", ["fig", "banana", "kiwi!"]),
    ("u2", "Name a colour.", "red", ["teal", "red", "magenta"]),
]


def score_all(manager, data, order=None):
    """What RewardLoopWorker.compute_score_batch does: every row concurrently, one loop."""
    order = list(range(len(data))) if order is None else order

    async def run():
        return await asyncio.gather(*(manager.run_single(data[i : i + 1]) for i in order))

    outputs = manager.loop.run_until_complete(run())
    by_row = dict(zip(order, outputs, strict=True))
    return [by_row[i] for i in sorted(order)]  # in row order


def load(tokenizer, monkeypatch=None, scripted=True, **rmr1):
    from verl.trainer.ppo.reward import load_reward_manager

    if scripted:  # the judge: longer wins (exact rewards); the manager code is all real
        backend = LongerWins()
        scorer = Scorer(backend)
        monkeypatch.setattr("rmr1_verl.manager.shared_scorer", lambda config: scorer)
    else:
        backend = None
    config = verl_config(tiny_llama(), n=3, rmr1={"strategy": "round-robin", **rmr1})
    return load_reward_manager(config, tokenizer), backend


def test_entry_point_registers_the_manager_on_import_verl():
    import verl  # noqa: F401 - loads the verl.plugins entry points
    from rmr1_verl.manager import RMR1RewardManager
    from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls

    [entry] = [ep for ep in entry_points(group="verl.plugins") if ep.name == "rmr1"]
    assert entry.value == "rmr1_verl.plugin"
    assert get_reward_manager_cls("rmr1") is RMR1RewardManager


def test_check_command_passes(capsys, monkeypatch):
    from rmr1_verl.__main__ import main

    monkeypatch.setenv("RMR1_BACKEND__NAME", "constant")
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert out.count("ok: ") == 4 and "reward manager 'rmr1'" in out


def test_groups_are_judged_together_whatever_the_arrival_order(tokenizer, monkeypatch):
    from rmr1_verl.manager import RMR1RewardManager

    # a call goes out once it holds all six pairs (streamed or not): no race with the clock
    manager, backend = load(
        tokenizer, monkeypatch, service={"max_batch_size": 6, "max_wait_ms": 60_000}
    )
    assert isinstance(manager, RMR1RewardManager) and manager.group_size == 3
    data = rollouts(tokenizer, GROUPS)
    order = list(range(6))
    random.Random(0).shuffle(order)  # rows of the two groups interleave, as in streaming mode
    outputs = score_all(manager, data, order)
    scores = [out["reward_score"] for out in outputs]
    assert scores == [0.0, 1.0, 0.5, 0.5, 0.0, 1.0]  # win rates: longer wins
    assert backend.batches == [6]  # both complete groups' pairs in one judge call
    for out in outputs:
        assert set(out["reward_extra_info"]) == KEYS
        assert out["reward_extra_info"]["rmr1_judgments"] == 2.0
        assert out["reward_extra_info"]["rmr1_fallback"] == 0.0
        assert out["reward_extra_info"]["rmr1_reference"] == 0.0  # judged within its group
        assert out["reward_extra_info"]["rmr1_group"] == 3.0
    rm_scores = type(manager).assemble_rm_scores(data, scores)
    ends = data.batch["attention_mask"][:, 48:].sum(dim=1) - 1
    assert rm_scores[range(6), ends].tolist() == scores
    assert rm_scores.sum().item() == pytest.approx(sum(scores))


def test_an_incomplete_group_falls_back_to_the_reference_after_the_timeout(tokenizer, monkeypatch):
    # without streaming, the reference rule's judgments alone (streamed: tests/test_streaming.py)
    manager, backend = load(tokenizer, monkeypatch, group={"timeout_s": 0.2, "stream_pairs": False})
    data = rollouts(tokenizer, GROUPS[:1])
    outputs = score_all(manager, data, order=[0, 1])  # the third rollout went elsewhere
    infos = [out["reward_extra_info"] for out in outputs]
    assert [out["reward_score"] for out in outputs] == [0.0, 1.0]  # vs "apple"
    # judged against the reference (not the fallback reward) because the group was split
    assert all(info["rmr1_reference"] == info["rmr1_split"] == 1.0 for info in infos)
    assert all(info["rmr1_fallback"] == info["rmr1_error"] == 0.0 for info in infos)
    assert backend.batches == [2]


def test_a_rollout_of_an_expired_group_is_answered_at_once(tokenizer, monkeypatch, caplog):
    """Never a second group_timeout_s: the late rollout does not open a new group."""
    manager, backend = load(tokenizer, monkeypatch, group={"timeout_s": 0.1, "stream_pairs": False})
    data = rollouts(tokenizer, GROUPS[:1])
    score_all(manager, data, order=[0, 2])  # expires: two of three rollouts
    late = manager.run_single(data[1:2])
    out = manager.loop.run_until_complete(asyncio.wait_for(late, timeout=60))
    info = out["reward_extra_info"]
    assert out["reward_score"] == 1.0  # "banana" against the reference "apple": longer wins
    assert info["rmr1_split"] == info["rmr1_reference"] == 1.0 and info["rmr1_fallback"] == 0.0
    assert manager.local().pending == 0  # every rollout of the group is accounted for
    assert manager.local().stats["late"] == 1
    assert "came after its group.timeout_s" in caplog.text and backend.batches == [2, 1]


def test_each_steps_rollouts_are_summarised_in_the_log(tokenizer, monkeypatch, caplog):
    """veRL 0.9.1 logs no training-step means of reward extra info: the manager logs its own."""
    from verl.trainer.ppo.reward import load_reward_manager

    backend = LongerWins()
    scorer = Scorer(backend)
    monkeypatch.setattr("rmr1_verl.manager.shared_scorer", lambda config: scorer)
    config = verl_config(tiny_llama(), n=3, rmr1={"strategy": "round-robin"})
    config.data = {"train_batch_size": 2}  # a step: 2 prompts x 3 rollouts
    manager = load_reward_manager(config, tokenizer)
    with caplog.at_level("INFO", logger="rmr1_verl.manager"):
        score_all(manager, rollouts(tokenizer, GROUPS))
    line = "6 rollouts: split 0 (0.0%), fallback 0 (0.0%), mean group 3.00 of 3.00 expected"
    assert line in caplog.text and "WARNING" not in caplog.text

    caplog.clear()
    config.data = {"train_batch_size": 1}
    manager = load_reward_manager(config, tokenizer)
    manager.group_timeout_s = 0.1
    with caplog.at_level("INFO", logger="rmr1_verl.manager"):
        score_all(manager, rollouts(tokenizer, GROUPS[:1]), order=[0, 1])  # one never comes
        assert "rollouts: split" not in caplog.text  # two of the step's three so far
        score_all(manager, rollouts(tokenizer, GROUPS[:1]), order=[2])  # late: answered at once
    assert manager.local().stats["late"] == 1  # not a new group of one
    [record] = [r for r in caplog.records if "rollouts: split" in r.getMessage()]
    assert record.levelname == "WARNING"
    assert "3 rollouts: split 3 (100.0%), fallback 0 (0.0%)" in record.getMessage()


def test_incomplete_group_drop_or_error(tokenizer, monkeypatch, caplog):
    data = rollouts(tokenizer, GROUPS[:1])
    manager, backend = load(tokenizer, monkeypatch, group={"timeout_s": 0.1, "on_split": "drop"})
    outputs = score_all(manager, data, order=[0])
    assert outputs[0]["reward_score"] == 0.5  # the fallback: midpoint of [loss, win]
    info = outputs[0]["reward_extra_info"]
    assert info["rmr1_dropped"] == info["rmr1_fallback"] == info["rmr1_split"] == 1.0
    assert "incomplete group" in caplog.text and backend.batches == []


def test_a_late_rollout_never_raises_even_with_on_split_error(tokenizer, monkeypatch, caplog):
    """on_split: error (the default) is logged as an error and judged against the reference."""
    data = rollouts(tokenizer, GROUPS[:1])
    manager, backend = load(tokenizer, monkeypatch, group={"timeout_s": 0.1, "on_split": "error"})
    with caplog.at_level("ERROR", logger="rmr1_verl.manager"):
        [out] = score_all(manager, data, order=[0])  # two rollouts of three never come
    assert out["reward_score"] == 0.0  # "fig" against the reference "apple": shorter loses
    info = out["reward_extra_info"]
    assert info["rmr1_reference"] == info["rmr1_split"] == 1.0 and backend.batches == [1]
    assert "got 1 of 3 rollouts" in caplog.text


def test_group_timeout_from_the_yaml_reward_section(tokenizer, monkeypatch, tmp_path):
    path = tmp_path / "rmr1.yaml"
    path.write_text("backend: {name: constant}\nreward: {group: {timeout_s: 45}}\n")
    manager, _ = load(tokenizer, monkeypatch, config=str(path))
    assert manager.group_timeout_s == 45
    manager, _ = load(tokenizer, monkeypatch, config=str(path), group={"timeout_s": 7})
    assert manager.group_timeout_s == 7  # +reward.rmr1.group.timeout_s wins
    local = (
        manager.local()
    )  # the judge has reward.service.timeout_s after the group closes, unchanged
    assert (local.group_timeout_s, local.deadline) == (7, "close")
    assert local.config.service.timeout_s == manager.options.service.timeout_s
    default = load(tokenizer, monkeypatch)[0]  # the reward: section's defaults, as every trainer
    assert (default.group_timeout_s, default.on_split) == (600, "error")


def test_the_rows_rollout_n_sets_its_group_size(tokenizer, monkeypatch):
    manager, backend = load(tokenizer, monkeypatch, group={"timeout_s": 600})
    data = rollouts(tokenizer, GROUPS[:1])
    data.non_tensor_batch["__rollout_n__"] = data.non_tensor_batch["uid"].copy()
    data.non_tensor_batch["__rollout_n__"][:] = 2  # a per-prompt n of 2, not rollout.n = 3
    outputs = score_all(manager, data, order=[0, 2])  # would wait 600 s for a third otherwise
    assert [o["reward_score"] for o in outputs] == [0.0, 1.0]
    assert all(o["reward_extra_info"]["rmr1_fallback"] == 0.0 for o in outputs)
    assert backend.batches == [1]  # one in-group pair


def test_reference_strategy_and_validation_rows_need_no_barrier(tokenizer, monkeypatch):
    manager, _ = load(tokenizer, monkeypatch, strategy="reference")
    data = rollouts(tokenizer, GROUPS[:1])
    assert [o["reward_score"] for o in score_all(manager, data, [1])] == [1.0]  # banana > apple

    manager, _ = load(tokenizer, monkeypatch)  # round-robin; val_kwargs.n = 1
    data.non_tensor_batch["extra_info"][0] = {"question": "Name a fruit.", "split": "test"}
    [out] = score_all(manager, data, [0])  # a validation row is alone: judged vs reference
    info = out["reward_extra_info"]  # against the reference, though its group was not split
    assert out["reward_score"] == 0.0 and (info["rmr1_reference"], info["rmr1_split"]) == (1, 0)


def test_unreadable_rows_get_the_neutral_reward(tokenizer, monkeypatch, caplog):
    manager, _ = load(tokenizer, monkeypatch, strategy="reference")
    data = rollouts(tokenizer, GROUPS[:1])
    data.non_tensor_batch["reward_model"][0] = {"style": "model"}  # no ground truth
    del data.non_tensor_batch["raw_prompt"]
    data.non_tensor_batch["extra_info"][1] = {}  # no prompt at all
    outputs = score_all(manager, data, [0, 1])
    assert [o["reward_score"] for o in outputs] == [0.5, 0.5]
    assert outputs[0]["reward_extra_info"]["rmr1_no_reference"] == 1.0
    assert outputs[1]["reward_extra_info"]["rmr1_bad_input"] == 1.0
    assert "no reference answer" in caplog.text and "neither raw_prompt" in caplog.text
    assert all(set(o["reward_extra_info"]) == KEYS for o in outputs)


def test_judge_health_per_rollout_for_judges_with_known_bias(tokenizer, monkeypatch, tmp_path):
    from rmr1_plugins import Scorer
    from rmr1_plugins.rewards.hard_pairs import writer_for
    from rmr1_plugins.rewards.health import length_correlation
    from rmr1_plugins.testing import AlwaysA

    # longer wins: no position bias, full length bias, orders agree
    manager, _ = load(tokenizer, monkeypatch)
    infos = [o["reward_extra_info"] for o in score_all(manager, rollouts(tokenizer, GROUPS[:1]))]
    assert [i["score"] for i in infos] == [0.0, 1.0, 0.5]  # fig, banana, kiwi!
    corr = length_correlation([0.0, 1.0, 0.5], [3, 6, 5])
    for info in infos:
        assert info["rmr1_health/longer_wins"] == 1.0
        assert info["rmr1_health/length_corr"] == pytest.approx(corr)
        assert info["rmr1_health/unparsed"] == 0.0 and info["rmr1_health/confidence"] == 0.5

    # always A in both orders: slot-A rate 1, order consistency 0, every pair a hard pair
    hard = tmp_path / "hard.jsonl"
    manager, _ = load(tokenizer, monkeypatch, hard_pairs={"path": str(hard)})
    scorer = Scorer(AlwaysA(options={"prob": 0.8}), order="both")
    monkeypatch.setattr("rmr1_verl.manager.shared_scorer", lambda config: scorer)
    outputs = score_all(manager, rollouts(tokenizer, GROUPS[:1]))
    for out in outputs:
        info = out["reward_extra_info"]
        assert set(info) == KEYS and out["reward_score"] == 0.5
        assert info["rmr1_health/slot_a"] == 1.0 and info["rmr1_health/orders_agree"] == 0.0
        assert info["rmr1_health/confidence"] == pytest.approx(0.8)
        assert info["rmr1_health/length_corr"] == 0.0  # equal rewards: neutral
    writer_for(manager.options).flush()
    rows = [json.loads(line) for line in hard.read_text().splitlines()]
    assert len(rows) == 3 and all(r["id"].startswith("hard-order_flip-") for r in rows)


@pytest.mark.model
def test_smollm2_judges_a_group_in_the_manager(tokenizer, smollm2_dir, tmp_path):
    config = tmp_path / "rmr1.yaml"
    config.write_text(
        "template: rmr1-reasoning\n"
        f"backend: {{name: hf, model: {smollm2_dir}, options: {{dtype: float32}}}}\n"
        "sampling: {max_new_tokens: 16}\n"
    )
    manager, _ = load(tokenizer, scripted=False, config=str(config), group={"size": 2})
    data = rollouts(tokenizer, [("u1", "What is 2+2?", "4", ["2+2 is 4.", "It is 5."])])
    outputs = score_all(manager, data)
    for out in outputs:
        assert 0.0 <= out["reward_score"] <= 1.0 and math.isfinite(out["reward_score"])
        info = out["reward_extra_info"]
        assert set(info) == KEYS and info["rmr1_judgments"] == 1.0 and info["rmr1_error"] == 0.0
    win = [o["reward_extra_info"]["score"] for o in outputs]  # on the default [0, 1] scale
    assert win[0] + win[1] == pytest.approx(1.0)  # one comparison: the credit adds up to one


def test_manager_also_loads_by_importlib_source(tokenizer):
    """Without the entry point: reward.reward_manager.source=importlib with a pkg:// path."""
    from rmr1_verl.manager import RMR1RewardManager
    from verl.trainer.ppo.reward import load_reward_manager

    config = verl_config(
        tiny_llama(),
        reward_manager={
            "source": "importlib",
            "name": "RMR1RewardManager",
            "module": {"path": "pkg://rmr1_verl.manager"},
        },
    )
    assert isinstance(load_reward_manager(config, tokenizer), RMR1RewardManager)


def test_the_concurrency_check_applies_only_when_rollouts_wait(tokenizer, monkeypatch):
    """In a Ray worker under Ray's default cap, a step too large to hold is refused for an
    in-group strategy; strategy: reference holds nothing, so it starts."""
    from verl.trainer.ppo.reward import load_reward_manager

    monkeypatch.setattr("rmr1_verl.manager._in_ray_actor", lambda: True)
    for strategy in ("round-robin", "reference"):
        config = verl_config(tiny_llama(), n=3, rmr1={"strategy": strategy})
        config.data = {"train_batch_size": 4096}  # 12288 rollouts over one worker
        if strategy == "reference":
            assert load_reward_manager(config, tokenizer).strategy.needs_reference
        else:
            with pytest.raises(ValueError, match="may hold 12288 waiting rollouts"):
                load_reward_manager(config, tokenizer)
