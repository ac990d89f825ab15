from pathlib import Path

import pytest

from rmr1_plugins import ConfigError, load_config
from rmr1_plugins.backends.constant import ConstantBackend


def test_priority_overrides_then_env_then_file(tmp_path, monkeypatch):
    path = tmp_path / "rmr1.yaml"
    path.write_text(
        "template: rmr1-reasoning\norder: both\nbackend:\n  name: constant\n  model: from-file\n"
        "sampling:\n  max_new_tokens: 100\n"
    )
    monkeypatch.setenv("RMR1_BACKEND__MODEL", "from-env")
    monkeypatch.setenv("RMR1_SAMPLING__MAX_NEW_TOKENS", "200")
    monkeypatch.setenv("RMR1_DISABLED_PLUGINS", "")  # not a config key: ignored
    config = load_config(path, sampling={"max_new_tokens": 300})
    assert config.template == "rmr1-reasoning" and config.order == "both"
    assert config.backend.name == "constant" and config.backend.model == "from-env"
    assert config.sampling.max_new_tokens == 300


def test_unknown_key_names_its_path(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("backend:\n  nmae: hf\n")
    with pytest.raises(
        ConfigError, match=r"invalid configuration in .*bad.yaml:\n  backend.nmae: unknown key"
    ):
        load_config(path)


def test_a_trainers_config_file_scores_too():
    # the reward: section belongs to rmr1_plugins.rewards.config; rmr1 score reads the rest
    examples = Path(__file__).parents[1] / "examples"
    for name in ("rmr1_judge.yaml", "rmr1-openrlhf.yaml", "trl_judge.yaml"):
        assert load_config(examples / name).order == "both"


def test_bad_value_and_bad_file(tmp_path):
    with pytest.raises(ConfigError, match=r"sampling\.temperature"):
        load_config(sampling={"temperature": -1})
    path = tmp_path / "list.yaml"
    path.write_text("- a\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")


def test_build_scorer_from_config():
    config = load_config(
        backend={"name": "constant", "options": {"completion": "<answer>[[B]]</answer>"}}
    )
    scorer = config.build_scorer()
    assert isinstance(scorer.backend, ConstantBackend)
    assert scorer.sampling.max_new_tokens == 4096


def test_backend_options_are_validated():
    with pytest.raises(ConfigError, match=r"backend\.options\.completon: unknown key"):
        load_config(backend={"name": "constant", "options": {"completon": "x"}}).build_backend()
