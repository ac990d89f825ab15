"""compute_score through veRL's own loaders, managers and config composition."""

from __future__ import annotations

import asyncio
import json
import math
import os
import shlex
from pathlib import Path

import pytest
from rmr1_verl.reward import compute_score, settings, verl_verifiable_reward

from rmr1_plugins.plugins import UnknownNameError, get_backend_class
from rmr1_plugins.rewards.metrics import KEYS as CONTRACT
from rmr1_plugins.testing import tiny_llama
from rmr1_plugins.testing.verl import rollouts, verl_config

ROOT = Path(__file__).parents[3]
KEYS = {"score", *CONTRACT}  # the metrics contract (rmr1_plugins.rewards.metrics)
QUESTION = {"question": "What is 2+2?"}

# One reward: section with the keys of every integration, shared by the three adapters' tests.
SHARED = (Path(__file__).parents[3] / "tests" / "data" / "shared_reward_config.yaml").read_text()


def judge_file(tmp_path, text):
    path = tmp_path / "rmr1.yaml"
    path.write_text(text)
    return str(path)


def run(coroutine):
    return asyncio.new_event_loop().run_until_complete(coroutine)


def test_pkg_path_loads_through_verl_and_is_awaited(tmp_path):
    from verl.trainer.ppo.reward import get_custom_reward_fn

    config = verl_config(
        tiny_llama(),
        custom_reward_function={
            "path": "pkg://rmr1_verl.reward",
            "name": "compute_score",
            "reward_kwargs": {"config": judge_file(tmp_path, "backend: {name: constant}\n")},
        },
    )
    fn = get_custom_reward_fn(config)  # veRL wraps it in a partial with the reward_kwargs
    out = run(fn(data_source="demo", solution_str="4", ground_truth="5", extra_info=QUESTION))
    assert set(out) == KEYS
    assert out["score"] == 1.0 and out["rmr1_judgments"] == 1.0  # constant judge: slot A wins
    assert out["rmr1_error"] == out["rmr1_fallback"] == 0.0 and out["rmr1_reference"] == 1.0


def test_judge_health_of_a_slot_a_judge_in_the_extra_info(tmp_path):
    """The constant judge always says [[A]]: slot-A rate 1; with both orders they never agree."""
    config = judge_file(tmp_path, "backend: {name: constant}\n")
    one = run(compute_score("demo", "4", "five", QUESTION, config=config))
    assert one["rmr1_health/slot_a"] == 1.0 and one["rmr1_health/orders_agree"] == 0.0
    assert one["rmr1_health/longer_wins"] == 0.0  # the shorter rollout beat the reference
    both = run(compute_score("demo", "4", "five", QUESTION, config=config, order="both"))
    assert both["score"] == 0.5 and both["rmr1_judgments"] == 2.0
    health = {k: v for k, v in both.items() if k.startswith("rmr1_health/")}
    assert health == {
        "rmr1_health/slot_a": 1.0,
        "rmr1_health/orders_agree": 0.0,
        "rmr1_health/unparsed": 0.0,
        "rmr1_health/truncated": 0.0,
        "rmr1_health/confidence": 0.5,  # no verdict probabilities: neutral
        "rmr1_health/invalid_probs": 0.0,
        "rmr1_health/longer_wins": 0.5,  # no combined verdict: neutral
        "rmr1_health/length_corr": 0.0,  # one rollout: no group
    }
    hard = tmp_path / "hard.jsonl"
    run(
        compute_score(
            "demo",
            "4",
            "five",
            QUESTION,
            config=config,
            order="both",
            hard_pairs={"path": str(hard)},
        )
    )
    from rmr1_plugins.rewards.config import RewardConfig
    from rmr1_plugins.rewards.hard_pairs import writer_for

    writer_for(RewardConfig(hard_pairs={"path": str(hard)})).flush()
    [row] = [json.loads(line) for line in hard.read_text().splitlines()]
    assert row["response_a"] == "4" and row["response_b"] == "five" and row["label"] is None


@pytest.mark.model
def test_naive_manager_with_compute_score_and_smollm2(tokenizer, smollm2_dir, tmp_path):
    """veRL's own naive manager calls our async compute_score; SmolLM2 really judges."""
    from verl.trainer.ppo.reward import load_reward_manager

    judge = judge_file(
        tmp_path,
        "template: rmr1-reasoning\n"
        f"backend: {{name: hf, model: {smollm2_dir}, options: {{dtype: float32}}}}\n"
        "sampling: {max_new_tokens: 16}\norder: both\n",
    )
    config = verl_config(
        tiny_llama(),
        custom_reward_function={
            "path": "pkg://rmr1_verl.reward",
            "name": "compute_score",
            "reward_kwargs": {"config": judge},
        },
        reward_manager={"source": "register", "name": "naive", "module": {"path": None}},
    )
    manager = load_reward_manager(config, tokenizer)
    assert type(manager).__name__ == "NaiveRewardManager" and manager.is_async_reward_score
    data = rollouts(tokenizer, [("u1", "What is 2+2?", "2+2 = 4", ["4", "It is five."])])
    outputs = [manager.loop.run_until_complete(manager.run_single(data[i : i + 1])) for i in (0, 1)]
    for out in outputs:
        info = out["reward_extra_info"]
        assert set(info) >= KEYS and info["rmr1_judgments"] == 2.0  # both orders
        assert 0.0 <= out["reward_score"] <= 1.0 and math.isfinite(out["reward_score"])
        assert info["rmr1_error"] == 0.0


def test_rows_that_cannot_be_judged_get_the_neutral_score(tmp_path, caplog):
    config = judge_file(tmp_path, "backend: {name: constant}\nreward: {fallback: 0.25}\n")
    no_question = run(compute_score("demo", "4", "4", {}, config=config))
    no_reference = run(compute_score("demo", "4", None, QUESTION, config=config))
    assert no_question["score"] == no_reference["score"] == 0.25
    assert no_question["rmr1_bad_input"] == no_reference["rmr1_no_reference"] == 1.0
    assert "no question in extra_info" in caplog.text and "no reference" in caplog.text
    assert set(no_question) == set(no_reference) == KEYS
    assert no_question["rmr1_fallback"] == 1.0 and no_question["rmr1_judgments"] == 0.0
    # the reference may live in extra_info instead of ground_truth, the prompt may be chat turns
    extra = {"question": [{"role": "user", "content": "2+2?"}], "reference": "four"}
    assert run(compute_score("demo", "4", None, extra, config=config))["score"] == 1.0


def test_a_broken_configuration_is_a_clear_error(tmp_path):
    config = judge_file(tmp_path, "backend: {name: constant}\nreward: {on_unparsed: maybe}\n")
    with pytest.raises(ValueError, match=r"(?s)rmr1 compute_score: .*reward\.on_unparsed"):
        run(compute_score("demo", "4", "4", QUESTION, config=config))


def test_a_config_file_shared_with_the_reward_service(tmp_path):
    config = judge_file(tmp_path, SHARED)
    assert run(compute_score("demo", "4", "5", QUESTION, config=config))["score"] == 1.0
    assert run(compute_score("demo", "4", "5", {}, config=config))["score"] == 0.25  # fallback
    settings_, _ = settings({"config": config})
    assert settings_.reward.strategy == "pivot" and settings_.reward.service.timeout_s == 60
    config = judge_file(tmp_path, SHARED + "  stratgy: knockout\n")
    with pytest.raises(ValueError, match=r"reward\.stratgy: unknown key\n  \(in .*rmr1.yaml\)"):
        run(compute_score("demo", "4", "4", QUESTION, config=config))


def test_router_address_points_the_openai_backend_at_verl_servers(tmp_path):
    tokenizer = type("Tok", (), {"name_or_path": "/models/RM-R1-7B"})()
    config, _ = settings(
        {"config": judge_file(tmp_path, "backend: {name: hf, options: {dtype: bfloat16}}\n")},
        reward_router_address="10.0.0.7:8123",
        reward_model_tokenizer=tokenizer,
    )
    backend = config.scorer.backend
    assert (backend.name, backend.model) == ("openai", "/models/RM-R1-7B")
    assert backend.options == {"base_url": "http://10.0.0.7:8123/v1"}  # hf options dropped
    config, _ = settings({"model": "served-name"}, reward_router_address="h:1")
    assert config.scorer.backend.model == "served-name"


def test_the_router_judge_gets_the_template_for_its_own_name(tmp_path):
    """GenRM: the served judge's name (the reward model's tokenizer) picks RM-R1's template."""
    distilled = type("Tok", (), {"name_or_path": "/ckpt/RM-R1-DeepSeek-Distilled-Qwen-7B"})()
    config, _ = settings({}, reward_router_address="h:1", reward_model_tokenizer=distilled)
    assert config.scorer.backend.model == "/ckpt/RM-R1-DeepSeek-Distilled-Qwen-7B"
    assert config.scorer.template == "rmr1-reasoning"
    assert "from the model name" in config.scorer.template_choice
    assert config.scorer.neutralize_markup  # the training default survives the rebuild
    instruct = {"model": "gaotang/RM-R1-Qwen2.5-Instruct-7B"}
    config, _ = settings(instruct, reward_router_address="h:2")
    assert config.scorer.template == "rmr1-instruct"
    # a template set in the judge file still wins, and the other settings survive the rebuild
    path = judge_file(tmp_path, "template: rmr1-instruct\nparser: rmr1-eval\n")
    config, _ = settings({"config": path}, reward_router_address="h:3",
                         reward_model_tokenizer=distilled)  # fmt: skip
    assert (config.scorer.template, config.scorer.parser) == ("rmr1-instruct", "rmr1-eval")
    assert config.scorer.template_choice == "set explicitly"


def _openai_backend_available() -> bool:
    try:
        get_backend_class("openai")
    except UnknownNameError:
        return False
    return True


@pytest.mark.skipif(not _openai_backend_available(), reason="needs the core's openai backend")
def test_compute_score_reaches_a_router_over_http(tokenizer):
    """veRL's GenRM flow: the naive manager passes reward_router_address to compute_score."""
    from aiohttp import web
    from verl.trainer.ppo.reward import load_reward_manager

    seen = []

    async def chat(request):
        body = await request.json()
        seen.append(body)
        message = {"role": "assistant", "content": "<eval>ok</eval><answer>[[B]]</answer>"}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        return web.json_response({"id": "x", "object": "chat.completion", "model": body["model"],
                                  "choices": [choice], "usage": usage})  # fmt: skip

    async def scenario():
        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            config = verl_config(
                tiny_llama(),
                custom_reward_function={"path": "pkg://rmr1_verl.reward", "name": "compute_score"},
                reward_manager={"source": "register", "name": "naive", "module": {"path": None}},
            )
            manager = load_reward_manager(
                config,
                tokenizer,
                reward_router_address=f"127.0.0.1:{port}",
                reward_model_tokenizer=type("T", (), {"name_or_path": "judge-model"})(),
            )
            data = rollouts(tokenizer, [("u1", "What is 2+2?", "4", ["five"])])
            return await manager.run_single(data[0:1])
        finally:
            await runner.cleanup()

    out = asyncio.new_event_loop().run_until_complete(scenario())
    assert out["reward_score"] == 0.0  # the judge preferred the reference (slot B)
    [request] = seen
    assert request["model"] == "judge-model"
    assert "[The Start of Chatbot A's Response]\nfive\n" in request["messages"][-1]["content"]


def test_verifiable_score_through_pkg_path():
    from verl.utils.import_utils import load_extern_object

    fn = load_extern_object("pkg://rmr1_verl.reward", "verl_verifiable_reward")
    assert fn("d", "<answer>[[B]]</answer>", "model_b") == {
        "score": 1.0,
        "rmr1_correct": 1.0,
        "rmr1_bad_input": 0.0,
    }  # the verifiable reward's one key set, as in every trainer
    assert fn("d", "<answer>[[B]]</answer>", "A")["score"] == -1.0
    bad = verl_verifiable_reward("d", "<answer>[[A]]</answer>", "tie")
    assert bad == {"score": 0.0, "rmr1_correct": 0.0, "rmr1_bad_input": 1.0}
    assert (
        fn("d", "<answer>[[A]]</answer> then more" * 4, "A", parser="strict")["rmr1_correct"] == 1.0
    )


def example_overrides() -> list[str]:
    """The Hydra overrides in examples/verl_grpo.sh, exactly as written there."""
    script = (ROOT / "examples" / "verl_grpo.sh").read_text()
    command = script[script.index("python -m verl.trainer.main_ppo") :].replace("\\\n", " ")
    words = shlex.split(command)[3:]
    return [word for word in words if word != "$@"]


def test_example_overrides_compose_and_load_the_rmr1_manager(tokenizer, monkeypatch):
    """The example's overrides on veRL's real ppo_trainer.yaml give the rmr1 manager."""
    import verl
    from hydra import compose, initialize_config_dir
    from rmr1_verl.manager import RMR1RewardManager
    from verl.trainer.ppo.reward import load_reward_manager

    monkeypatch.setenv("RMR1_CONFIG", str(ROOT / "examples" / "rmr1_judge.yaml"))
    overrides = example_overrides()
    assert "reward.reward_manager.name=rmr1" in overrides
    overrides.append(f"actor_rollout_ref.model.path={tiny_llama()}")  # a local tokenizer
    config_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        config = compose(config_name="ppo_trainer", overrides=overrides)
    assert config.reward.custom_reward_function.path == "pkg://rmr1_verl.reward"
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    validate_config(config, need_reference_policy(config), need_critic(config))  # as main_ppo
    manager = load_reward_manager(
        config,
        tokenizer,
        reward_router_address="127.0.0.1:9",
        reward_model_tokenizer=type("T", (), {"name_or_path": "gaotang/RM-R1"})(),
    )
    assert isinstance(manager, RMR1RewardManager)
    assert manager.group_size == 4 and manager.group_timeout_s == 120
    assert manager.val_group_size == 4 and manager.on_split == "reference"
    assert manager.options.strategy == "round-robin"
    assert manager.reward_config.scorer.order == "both"
    backend = manager.reward_config.scorer.backend
    assert backend.name == "openai" and backend.options["base_url"] == "http://127.0.0.1:9/v1"
    assert json.loads(json.dumps(manager.reward_config.scorer.sampling.model_dump()))


def test_cohort_ray_as_docs_verl_md_shows_it_composes_and_loads(tokenizer, monkeypatch):
    """``reward.num_workers=4 +reward.rmr1.cohort=ray`` (docs/trainers/verl.md) on
    ppo_trainer.yaml."""
    import verl
    from hydra import compose, initialize_config_dir
    from rmr1_verl.workers import concurrency
    from verl.trainer.ppo.reward import load_reward_manager

    from rmr1_plugins.serve.cohort_client import RayCohorts

    monkeypatch.setenv("RMR1_CONFIG", str(ROOT / "examples" / "rmr1_judge.yaml"))
    overrides = [*example_overrides(), f"actor_rollout_ref.model.path={tiny_llama()}"]
    overrides += ["reward.num_workers=4", "+reward.rmr1.cohort=ray"]
    config_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        config = compose(config_name="ppo_trainer", overrides=overrides)
    manager = load_reward_manager(config, tokenizer, reward_router_address="127.0.0.1:9")
    assert isinstance(manager.cohorts, RayCohorts)  # no actor is made before the first rollout
    assert manager.cohorts.max_concurrency == 4 * concurrency(config, {})
    assert manager.cohorts.settings.reward.group.timeout_s == 120
    assert manager.cohorts.on_split == "reference"


def test_a_system_turn_reaches_the_judge_as_in_every_trainer(tmp_path, monkeypatch):
    """A chat question with a system turn gives the judge the Python API's prompt."""
    from rmr1_plugins import Scorer
    from rmr1_plugins.rewards.engine import Group, score_groups
    from rmr1_plugins.testing import LongerWins

    chat = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "2+2?"}]
    api, verl = LongerWins(), LongerWins()
    score_groups(Scorer(api), [Group(chat, ["4"], reference="5")], "reference")
    monkeypatch.setattr("rmr1_verl.reward.shared_scorer", lambda config: Scorer(verl))
    config = judge_file(tmp_path, "backend: {name: constant}\n")
    out = run(compute_score("demo", "4", "5", {"question": chat}, config=config))
    assert out["rmr1_fallback"] == 0.0 and verl.seen == api.seen and len(api.seen) == 1
    assert "Be terse.\n\n2+2?" in api.seen[0][-1]["content"]
