"""Parity: TRL's GRPOTrainer gets the Python API's judge prompts, rewards and logged keys.

A real ``GRPOTrainer`` (the tiny random policy, no training step) calls the reward functions
through its own ``_calculate_rewards``: the parity case's conversational prompt (with a system
turn) repeated for its three completions, the ``reference`` column, and TRL's ``trainer_state``,
``log_extra`` and ``log_metric``. Four reward functions run in that one call: the sync and async
drivers, each with the reference and the round-robin strategy, each with its own recording
judge (rmr1_plugins.testing.parity).
"""

from __future__ import annotations

import pytest

from rmr1_plugins.testing import parity as case
from rmr1_plugins.testing.judges import fake_judges

DRIVERS = ("sync", "async")


@pytest.fixture(scope="module", autouse=True)
def judges():
    with fake_judges():
        yield


@pytest.fixture(scope="module")
def trainer(tiny_policy, tmp_path_factory):
    """A real GRPOTrainer built with the four reward functions (so its async loop runs)."""
    from datasets import Dataset
    from rmr1_trl import AsyncRMR1Reward, RMR1Reward
    from trl import GRPOConfig, GRPOTrainer

    folder = tmp_path_factory.mktemp("trl-parity")
    funcs, records = {}, {}
    for driver in DRIVERS:
        for strategy in case.STRATEGIES:
            name = f"rmr1_{driver}_{strategy.replace('-', '_')}"
            config, records[driver, strategy] = case.write_config(folder, name)
            cls = RMR1Reward if driver == "sync" else AsyncRMR1Reward
            funcs[driver, strategy] = cls(str(config), name=name, strategy=strategy)
    built = GRPOTrainer(
        model=str(tiny_policy),
        reward_funcs=list(funcs.values()),
        args=GRPOConfig(
            output_dir=str(folder / "out"),
            use_cpu=True,
            bf16=False,
            per_device_train_batch_size=3,
            num_generations=3,
            max_completion_length=8,
            report_to="none",
            save_strategy="no",
        ),
        train_dataset=Dataset.from_list([ROW] * 3),
    )
    return built, funcs, records


ROW = {"prompt": case.PROMPT, "reference": case.REFERENCE}


def calculate_rewards(trainer, func) -> tuple[list[float], dict[str, float]]:
    """TRL's own ``_calculate_rewards`` for the case's three completions, with ``func`` as the
    trainer's only reward function; its rewards and the metrics it logged (``log_metric``)."""
    size = len(case.COMPLETIONS)
    trainer.reward_funcs = [func]
    trainer.reward_func_names = [func.__name__]
    trainer.reward_processing_classes = [None]
    trainer._pending_metrics.clear()
    inputs = [dict(ROW) for _ in range(size)]  # TRL repeats each row num_generations times
    completions = [[{"role": "assistant", "content": c}] for c in case.COMPLETIONS]
    completion_ids = [trainer.processing_class(c)["input_ids"] for c in case.COMPLETIONS]
    rewards = trainer._calculate_rewards(inputs, [case.PROMPT] * size, completions, completion_ids)
    metrics = {name: values[-1] for name, values in trainer._pending_metrics.items()}
    return [row[0] for row in rewards.tolist()], metrics


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("strategy", case.STRATEGIES)
def test_trl_matches_the_python_api(trainer, driver, strategy, tmp_path):
    from rmr1_plugins.rewards.metrics import means

    built, funcs, records = trainer
    name = funcs[driver, strategy].__name__
    rewards, logged = calculate_rewards(built, funcs[driver, strategy])
    api = case.api(tmp_path, strategy)
    got = case.Outcome(case.judge_prompts(records[driver, strategy]), rewards, [])
    case.assert_same_judging(f"TRL {driver} {strategy}", got, api)
    case.check_judge_saw_the_system_turn(got.prompts)
    # TRL logs the batch mean of each contract key (log_metric); its own metrics are <name>/...
    contract = {key: value for key, value in logged.items() if not key.startswith(f"{name}/")}
    assert set(contract) == api.keys[0], f"TRL logged {sorted(logged)}"
    case.assert_same_values(f"TRL {driver} {strategy} batch means", [contract], [means(api.logs)])


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("strategy", case.STRATEGIES)
def test_trl_fallbacks_match_the_python_api(driver, strategy, tmp_path):
    """The fallback case (an unparsed judgment with on_unparsed: exclude; an empty reference)
    called as TRL calls a reward function: the same rewards (None) and batch means."""
    import asyncio

    from rmr1_trl import AsyncRMR1Reward, RMR1Reward

    from rmr1_plugins.rewards.metrics import means

    cls = RMR1Reward if driver == "sync" else AsyncRMR1Reward
    for name, completions, reference, reward in [
        ("mute", case.FALLBACK_COMPLETIONS, case.REFERENCE, case.EXCLUDE),
        ("empty", case.COMPLETIONS, "", {}),
    ]:
        if name == "empty" and strategy != "reference":
            continue  # an in-group strategy needs no reference
        (tmp_path / name).mkdir()
        config, record = case.write_config(tmp_path / name, "trl", **reward)
        logged: dict[str, float] = {}
        func = cls(str(config), strategy=strategy)
        size = len(completions)
        out = func(
            [case.PROMPT] * size,
            [[{"role": "assistant", "content": c}] for c in completions],
            reference=[reference] * size,
            log_metric=logged.__setitem__,
        )
        rewards = asyncio.run(out) if driver == "async" else out
        api = case.api(
            tmp_path / name, strategy, completions=completions, reference=reference, **reward
        )
        got = case.Outcome(case.judge_prompts(record), rewards, [])
        case.assert_same_judging(f"TRL {driver} {strategy} {name}", got, api)
        contract = {k: v for k, v in logged.items() if "/" not in k or k.startswith("rmr1_health")}
        case.assert_same_values(f"TRL {name} batch means", [contract], [means(api.logs)])
