"""compute_score's settings are read once per process and options, not once per rollout."""

from __future__ import annotations

import asyncio
import os

import rmr1_verl.reward as verl_reward
from rmr1_verl.reward import compute_score, settings

QUESTION = {"question": "What is 2+2?"}


def counted_loads(monkeypatch):
    calls = []
    load = verl_reward.load_reward_settings

    def counting(*args, **kwargs):
        calls.append(args)
        return load(*args, **kwargs)

    monkeypatch.setattr(verl_reward, "load_reward_settings", counting)
    monkeypatch.setattr("rmr1_plugins.settings._CACHED", {})
    return calls


def test_many_rollouts_read_the_file_once(tmp_path, monkeypatch):
    calls = counted_loads(monkeypatch)
    path = tmp_path / "rmr1.yaml"
    path.write_text("backend: {name: constant}\nreward: {win: 2.0}\n")
    loop = asyncio.new_event_loop()
    for _ in range(20):
        row = loop.run_until_complete(compute_score("demo", "4", "4", QUESTION, config=str(path)))
        assert row["score"] in (0.0, 1.0, 2.0)
    loop.close()
    assert len(calls) == 1


def test_a_changed_file_variable_or_option_is_read_again(tmp_path, monkeypatch):
    calls = counted_loads(monkeypatch)
    path = tmp_path / "rmr1.yaml"
    path.write_text("backend: {name: constant}\nreward: {win: 2.0}\n")
    assert settings({"config": str(path)})[0].reward.win == 2.0
    assert settings({"config": str(path)})[0].reward.win == 2.0 and len(calls) == 1
    path.write_text("backend: {name: constant}\nreward: {win: 3.0}\n")  # same size
    os.utime(path, ns=(1, 1))  # a new modification time
    assert settings({"config": str(path)})[0].reward.win == 3.0 and len(calls) == 2
    monkeypatch.setenv("RMR1_REWARD__WIN", "5")
    assert settings({"config": str(path)})[0].reward.win == 5.0 and len(calls) == 3
    assert settings({"config": str(path), "win": 7})[0].reward.win == 7.0 and len(calls) == 4
    assert settings({"config": str(path)})[0].reward.win == 5.0 and len(calls) == 4  # cached


def test_the_adapter_keys_come_back_as_a_fresh_dict(tmp_path, monkeypatch):
    counted_loads(monkeypatch)
    _, own = settings({"question_key": "q", "order": "both"})
    own["question_key"] = "changed"
    config, again = settings({"question_key": "q", "order": "both"})
    assert again == {"question_key": "q", "order": "both"} and config.scorer.order == "both"
