import pickle
import re
from pathlib import Path

import pytest

from rmr1_plugins import ConfigError
from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.rewards.strategies import resolve_strategy
from rmr1_plugins.scorer_config import LazyScorer, ScorerConfig
from rmr1_plugins.settings import load_reward_settings


def write(tmp_path, text):
    path = tmp_path / "rmr1.yaml"
    path.write_text(text)
    return path


def test_file_then_variables_then_arguments(tmp_path, monkeypatch):
    path = write(
        tmp_path,
        "order: both\nbackend: {name: constant}\n"
        "reward: {strategy: pivot, seed: 3, on_unparsed: loss}\n",
    )
    monkeypatch.setenv("RMR1_CONFIG", str(path))
    monkeypatch.setenv("RMR1_REWARD__STRATEGY", "knockout")
    monkeypatch.setenv("RMR1_SAMPLING__MAX_NEW_TOKENS", "32")
    settings = load_reward_settings(reward={"seed": 9})
    assert settings.scorer.order == "both" and settings.scorer.sampling.max_new_tokens == 32
    options = settings.reward
    assert (options.strategy, options.seed, options.on_unparsed) == ("knockout", 9, "loss")


def test_reward_service_keys_are_accepted_and_unknown_keys_named(tmp_path):
    shared = write(
        tmp_path, "reward: {service: {timeout_s: 120, max_batch_size: 8}, fallback: 0.0}\n"
    )
    assert load_reward_settings(shared).reward.fallback_reward == 0.0
    typo = write(tmp_path, "reward: {stratgy: pivot}\n")
    with pytest.raises(ConfigError, match=r"reward\.stratgy: unknown key"):
        load_reward_settings(typo)
    with pytest.raises(ConfigError, match="win and loss must differ"):
        load_reward_settings(reward={"win": 1, "loss": 1})


def test_settings_file_env_and_overrides(tmp_path, monkeypatch):
    path = tmp_path / "rmr1.yaml"
    path.write_text(
        "backend: {name: constant}\nreward:\n  fallback: 0.1\n  service: {timeout_s: 30}\n"
    )
    monkeypatch.setenv("RMR1_REWARD__SERVICE__TIMEOUT_S", "20")
    settings = load_reward_settings(path, reward={"service": {"max_batch_size": 8}})
    scorer, reward = settings.scorer, settings.reward
    assert scorer.backend.name == "constant" and scorer.neutralize_markup is True
    assert (reward.fallback, reward.service.timeout_s, reward.service.max_batch_size) == (
        0.1,
        20,
        8,
    )
    scorer = load_reward_settings(path, neutralize_markup=False).scorer
    assert scorer.neutralize_markup is False
    assert load_reward_settings(path, training=False).scorer.neutralize_markup is False
    path.write_text("reward:\n  fallbak: 0.1\n")
    with pytest.raises(ConfigError, match=r"reward\.fallbak: unknown key"):
        load_reward_settings(path)
    path.write_text("reward:\n  fallback: .nan\n")
    with pytest.raises(ConfigError, match=r"reward\.fallback: Input should be a finite number"):
        load_reward_settings(path)
    path.write_text("reward:\n  win: 1\n  loss: 1\n")
    with pytest.raises(ConfigError, match="win and loss must differ"):
        load_reward_settings(path)
    path.write_text("backend: {nmae: x}\n")
    with pytest.raises(ConfigError, match=r"backend.nmae: unknown key\n  \(in .*rmr1.yaml\)"):
        load_reward_settings(path)


def test_one_section_for_every_integration_and_unknown_keys_named(shared_config, monkeypatch):
    path = shared_config()
    settings = load_reward_settings(path)
    reward = settings.reward
    # group keys (TRL, veRL) and per-sample service keys (rmr1 serve, OpenRLHF) side by side
    assert (reward.strategy, reward.group.on_split, reward.inputs.reference_key) == (
        "round-robin",
        "error",
        "reference",
    )
    assert (
        reward.service.timeout_s,
        reward.service.max_batch_size,
        reward.service.max_concurrent_batches,
    ) == (150, 64, 4)
    assert reward.fallback_reward == 0.5 and reward.to_score(0.75) == 0.75
    assert settings.scorer.order == "both" and settings.scorer.neutralize_markup is True
    monkeypatch.setenv("RMR1_CONFIG", str(path))
    assert load_reward_settings() == settings  # what the adapters and the reward file call
    shared_config(stratgy="pivot")
    with pytest.raises(ConfigError, match=r"reward\.stratgy: unknown key\n  \(in .*shared.yaml\)"):
        load_reward_settings()


def test_every_reward_key_is_documented_once_in_rewards_md():
    text = (Path(__file__).parents[1] / "docs" / "concepts" / "rewards.md").read_text()
    section = text.split("## The reward configuration file", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([\w.]+)` \|", section, flags=re.MULTILINE)
    keys = []
    for name, info in RewardConfig.model_fields.items():  # a section's keys dotted
        fields = getattr(info.annotation, "model_fields", None)
        keys += [f"{name}.{key}" for key in fields] if fields else [name]
    assert sorted(documented) == sorted(keys)


def test_scale_and_fallback():
    options = RewardConfig(win=1.0, loss=-1.0)
    assert options.fallback_reward == 0.0  # the midpoint
    assert options.scale(0.75, resolve_strategy("round-robin")) == 0.5
    assert options.scale(2.3, resolve_strategy("bradley-terry")) == 2.3  # log-strengths as they are
    assert options.scale(None, resolve_strategy("pivot")) is None


def test_verdict_forgery_guard_is_on_for_training(tmp_path):
    if "neutralize_markup" not in ScorerConfig.model_fields:
        pytest.skip("this core has no neutralize_markup guard")
    assert load_reward_settings().scorer.neutralize_markup is True
    off = write(tmp_path, "neutralize_markup: false\n")
    assert load_reward_settings(off).scorer.neutralize_markup is False


def test_lazy_scorer_builds_once_and_pickles_without_the_engine():
    lazy = LazyScorer(ScorerConfig(backend={"name": "constant"}))
    scorer = lazy.get()
    assert lazy.get() is scorer
    clone = pickle.loads(pickle.dumps(lazy))
    assert clone._scorer is None and clone.get() is not scorer
