"""Parity: OpenRLHF's reward client gets the Python API's judge prompts, rewards and logged keys.

OpenRLHF 0.11.2's ``SingleTurnAgentExecutor`` (what its rollout actors run) formats the parity
case's chat (rmr1_plugins.testing.parity) with SmolLM2's chat template, takes each completion
from a stand-in engine, decodes prompt + response with special tokens and asks for the reward:
from the reward file (``_fetch_rewards_via_func``) or from ``rmr1 serve`` over 127.0.0.1
(``_fetch_rewards_via_http``; reference rewards, and whole-group rewards in cohort mode). The
three rollouts of the prompt run concurrently, as in ``generate_responses``.

And the pinned fact of the issue: a sample whose judge could not be set up logs the same keys as
a judged one, so OpenRLHF's ``make_experience_batch`` (which takes the keys of the batch's first
sample) stacks them whatever their order.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

agent = pytest.importorskip("openrlhf.utils.agent")
transformers = pytest.importorskip("transformers")

from rmr1_openrlhf import reward_file_path  # noqa: E402
from rmr1_openrlhf.reward import reset_runtime  # noqa: E402

from rmr1_plugins.testing import parity as case  # noqa: E402
from rmr1_plugins.testing import smollm2_checkpoint  # noqa: E402
from rmr1_plugins.testing.judges import fake_judges  # noqa: E402
from rmr1_plugins.testing.openrlhf import Engine  # noqa: E402


def load(name: str, path: Path):
    """A module loaded from ``path`` once per process under ``name``."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def tokenizer():
    return transformers.AutoTokenizer.from_pretrained(smollm2_checkpoint())


@pytest.fixture(autouse=True)
def judge():
    reset_runtime()
    with fake_judges():
        yield
    reset_runtime()


def rollouts(executor, tokenizer, completions=case.COMPLETIONS, label=case.REFERENCE) -> list[dict]:
    """The prompt's rollouts, concurrently, each asking for its reward."""
    prompt = tokenizer.apply_chat_template(case.PROMPT, tokenize=False, add_generation_prompt=True)
    params = SimpleNamespace(max_tokens=16, logprobs=None)

    async def group():
        return await asyncio.gather(
            *(
                executor.execute(prompt, label, params, 512, tokenizer, engine)
                for engine in [Engine(tokenizer, c) for c in completions]
            )
        )

    return asyncio.run(group())


def outcome(record: Path, outputs: list[dict]):
    """OpenRLHF's view of each rollout: its reward and its ``extra_logs``."""
    answers = [{"rewards": o["reward"], "extra_logs": o["extra_logs"]} for o in outputs]
    return case.from_openrlhf(record, answers)


def test_smollm2_formats_the_case_as_the_core_tests_send_it(tokenizer):
    prompt = tokenizer.apply_chat_template(case.PROMPT, tokenize=False, add_generation_prompt=True)
    assert prompt == case.CHATML  # tests/test_parity.py posts these strings to rmr1 serve


def test_reward_file(tokenizer, tmp_path, monkeypatch):
    config, record = case.write_config(tmp_path, "reward-file")
    monkeypatch.setenv("RMR1_CONFIG", str(config))
    executor = agent.SingleTurnAgentExecutor(str(reward_file_path()))
    got = outcome(record, rollouts(executor, tokenizer))
    case.assert_same("OpenRLHF reward file", got, case.api(tmp_path, "reference"))
    case.check_judge_saw_the_system_turn(got.prompts)


@pytest.mark.parametrize("name", ["mute", "empty"])
def test_reward_file_fallbacks(tokenizer, tmp_path, monkeypatch, name):
    """An unparsed judgment with on_unparsed: exclude, and an empty label: the Python API's
    rewards (the fallback reward) and logged values."""
    from rmr1_plugins.rewards.config import RewardConfig

    completions, reference, reward = {
        "mute": (case.FALLBACK_COMPLETIONS, case.REFERENCE, case.EXCLUDE),
        "empty": (case.COMPLETIONS, "", {}),
    }[name]
    config, record = case.write_config(tmp_path, f"reward-file-{name}", **reward)
    monkeypatch.setenv("RMR1_CONFIG", str(config))
    executor = agent.SingleTurnAgentExecutor(str(reward_file_path()))
    got = outcome(record, rollouts(executor, tokenizer, completions, reference))
    api = case.api(tmp_path, "reference", completions=completions, reference=reference, **reward)
    case.assert_same(f"OpenRLHF reward file {name}", got, api, RewardConfig().fallback_reward)


@pytest.mark.parametrize("strategy", case.STRATEGIES)
def test_rmr1_serve(tokenizer, tmp_path, strategy):
    # reference: each rollout against its label; round-robin: the server holds the group of 3
    group = {} if strategy == "reference" else {"strategy": strategy, "group": {"size": 3}}
    config, record = case.write_config(tmp_path, f"serve-{strategy}", **group)
    with case.Serve(config) as server:
        outputs = rollouts(agent.SingleTurnAgentExecutor(server.url), tokenizer)
    got = outcome(record, outputs)
    case.assert_same(f"OpenRLHF via rmr1 serve ({strategy})", got, case.api(tmp_path, strategy))


def test_a_judge_that_cannot_be_set_up_logs_the_same_keys(tokenizer, tmp_path, monkeypatch):
    config, _ = case.write_config(tmp_path, "judged")
    monkeypatch.setenv("RMR1_CONFIG", str(config))
    executor = agent.SingleTurnAgentExecutor(str(reward_file_path()))
    [judged] = rollouts(executor, tokenizer, ["5"])
    broken = tmp_path / "broken.yaml"  # the judge's options do not validate: no judge at all
    broken.write_text("order: both\nbackend: {name: parity-judge, options: {no_such: 1}}\n")
    monkeypatch.setenv("RMR1_CONFIG", str(broken))
    reset_runtime()
    [failed] = rollouts(executor, tokenizer, ["5"])
    assert failed["extra_logs"]["rmr1_fallback"].item() == 1.0
    assert failed["extra_logs"]["rmr1_error"].item() == 1.0
    contract = case.api(tmp_path, "reference").keys[0]
    assert set(failed["extra_logs"]) == set(judged["extra_logs"]) == contract
    experience = load(
        "openrlhf_experience",
        Path(agent.__file__).parents[1] / "trainer" / "ppo_utils" / "experience.py",
    )
    for first, second in ((judged, failed), (failed, judged)):
        items = [experience_of(experience, first), experience_of(experience, second)]
        batch = experience.make_experience_batch(items)  # the KeyError of the issue, if any
        assert set(batch.info) == {"reward", "score", *judged["extra_logs"]}
        fallbacks = [value.item() for value in batch.info["rmr1_fallback"]]
        assert fallbacks == [o["extra_logs"]["rmr1_fallback"].item() for o in (first, second)]


def experience_of(experience, output: dict):
    """The ``info`` part of OpenRLHF's ``_process_response_into_experience`` (which needs ray
    and vllm to import): reward, score and each extra log as a one-element tensor."""
    import torch

    info = {"reward": torch.tensor([output["reward"]]), "score": torch.tensor([output["scores"]])}
    for key, value in output["extra_logs"].items():
        if isinstance(value, torch.Tensor):
            value = value.flatten()[0].item()
        info[key] = torch.tensor([value])
    return experience.Experience(info=info)
