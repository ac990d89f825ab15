import os
from pathlib import Path

import pytest

from rmr1_plugins import ConfigError, load_config, settings
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
    # one loader, one message for rmr1 score and the trainers alike
    with pytest.raises(
        ConfigError,
        match=r"invalid configuration:\n  backend.nmae: unknown key\n  \(in .*bad.yaml\)",
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


def test_one_file_builds_the_same_scorer_everywhere_but_for_the_training_guard(tmp_path):
    from rmr1_plugins.settings import load_reward_settings

    path = tmp_path / "rmr1.yaml"
    path.write_text("order: both\nbackend: {name: constant}\nreward: {strategy: pivot}\n")
    offline = load_config(path)
    assert offline == load_reward_settings(path, training=False).scorer
    training = load_reward_settings(path, training=True).scorer
    assert training.neutralize_markup is True and offline.neutralize_markup is False
    assert training.model_copy(update={"neutralize_markup": False}) == offline
    path.write_text("neutralize_markup: false\n")  # a file that says so wins in training too
    assert load_reward_settings(path, training=True).scorer.neutralize_markup is False


def test_the_reward_section_is_validated_for_rmr1_score_too(tmp_path):
    path = tmp_path / "rmr1.yaml"
    path.write_text("reward: {stratgy: pivot}\n")
    with pytest.raises(ConfigError, match=r"reward\.stratgy: unknown key"):
        load_config(path)


def test_config_file_comes_from_rmr1_config_everywhere(tmp_path, monkeypatch):
    path = tmp_path / "rmr1.yaml"
    path.write_text("parser: rmr1-eval\n")
    monkeypatch.setenv("RMR1_CONFIG", str(path))
    assert load_config().parser == "rmr1-eval"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"template": "rmr1-instrct"},
            r"template: unknown template 'rmr1-instrct'\. Did you mean "
            r"'rmr1-instruct'\? Available: .*rmr1-instruct, rmr1-reasoning",
        ),
        (
            {"parser": "strikt"},
            r"parser: unknown parser 'strikt'\. Did you mean 'strict'\? "
            r"Available: .*rmr1-eval, rmr1-train, strict",
        ),
        (
            {"backend": {"name": "vlm"}},
            r"backend\.name: unknown backend 'vlm'\. Did you mean "
            r"'vllm'\? Available: constant, .*hf, openai, vllm",
        ),
    ],
)
def test_unknown_names_fail_at_load_time_listing_what_is_registered(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(**overrides)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as error:
        load_config(parser="x", template="y", backend={"name": "z"})
    assert [line.split(":")[0].strip() for line in str(error.value).splitlines()[1:]] == [
        "template",
        "parser",
        "backend.name",
    ]


def test_decisive_settings_carry_the_reward_scale_strategy_and_order():
    from rmr1_plugins.rewards.config import DECISIVE_REWARD_KEYS
    from rmr1_plugins.settings import decisive_settings, load_reward_settings

    settings = load_reward_settings(
        {"order": "given", "reward": {"strategy": "knockout", "win": 2, "loss": -1}}
    )
    values = decisive_settings(settings)
    assert values["strategy"] == "knockout"
    assert (values["win"], values["loss"], values["fallback"]) == (2.0, -1.0, 0.5)
    assert values["order"] == "given"
    assert set(values) == {key.split(".")[0] for key in (*DECISIVE_REWARD_KEYS, "order")}
    assert values["group"] == {"stream_pairs": None}  # a section's decisive key, nested as in YAML


def test_a_differing_section_key_is_named_with_its_section():
    from rmr1_plugins.rewards.config import RewardConfig, decisive_values, settings_difference

    own = decisive_values(RewardConfig(), "both")
    assert settings_difference(own, own) is None
    off = {**own, "group": {"stream_pairs": False}}
    assert settings_difference(off, own) == (
        "settings differ from this server's: reward.group.stream_pairs is False in the request, "
        "None here"
    )
    assert settings_difference({**own, "group": {}}, own) == (
        "settings differ from this server's: reward.group.stream_pairs is missing in the request"
    )
    assert settings_difference({**own, "group": [1]}, own) == (
        "settings.group must be an object, got list"
    )
    unknown = settings_difference({**own, "group": {"stream_pairs": True, "size": 4}}, own)
    assert unknown is not None and unknown.startswith("settings.group has an unknown key 'size'")


def test_cached_settings_are_loaded_again_only_when_their_inputs_change(tmp_path, monkeypatch):
    """What veRL's compute_score reads once per process rather than once per rollout."""
    monkeypatch.setattr(settings, "_CACHED", {})
    monkeypatch.delenv("RMR1_REWARD__WIN", raising=False)
    path = tmp_path / "rmr1.yaml"
    path.write_text("reward: {win: 2.0}\n")
    loads = []

    def load():
        loads.append(1)
        return settings.load_reward_settings(str(path)).reward.win

    def read(options, context=()):
        return settings.cached({"config": str(path), **options}, context, load)

    assert [read({}), read({})] == [2.0, 2.0] and len(loads) == 1
    path.write_text("reward: {win: 3.0}\n")  # same size
    os.utime(path, ns=(1, 1))  # a new modification time
    assert read({}) == 3.0 and len(loads) == 2
    monkeypatch.setenv("RMR1_REWARD__WIN", "5")
    assert read({}) == 5.0 and len(loads) == 3
    assert read({"x": 1}) == 5.0 and read({}, ["router"]) == 5.0 and len(loads) == 5
    assert read({}) == 5.0 and len(loads) == 5
