import pickle

import pytest

from rmr1_plugins import ConfigError
from rmr1_plugins.config import ScorerConfig
from rmr1_plugins.grouping import resolve_strategy
from rmr1_plugins.rewards import LazyScorer, RewardOptions, load_reward_settings


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
    shared = write(tmp_path, "reward: {timeout_s: 120, max_batch_size: 8, fallback: 0.0}\n")
    assert load_reward_settings(shared).reward.fallback_reward == 0.0
    typo = write(tmp_path, "reward: {stratgy: pivot}\n")
    with pytest.raises(ConfigError, match=r"reward\.stratgy: unknown key"):
        load_reward_settings(typo)
    with pytest.raises(ConfigError, match="win and loss must differ"):
        load_reward_settings(reward={"win": 1, "loss": 1})


def test_scale_and_fallback():
    options = RewardOptions(win=1.0, loss=-1.0)
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
