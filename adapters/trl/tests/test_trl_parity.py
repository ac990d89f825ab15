"""Parity: TRL's GRPOTrainer gets the Python API's judge prompts, rewards and logged keys.

A real ``GRPOTrainer`` (the tiny random policy, no training step) calls the reward functions
through its own ``_calculate_rewards``: the parity case's conversational prompt (with a system
turn) repeated for its three completions, the ``reference`` column, and TRL's ``trainer_state``,
``log_extra`` and ``log_metric``. Four reward functions run in that one call: the sync and async
drivers, each with the reference and the round-robin strategy, each with its own recording
judge (tests/parity_case.py).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[3]


def parity_case():
    """tests/parity_case.py, loaded once per process under its own name."""
    if "parity_case" not in sys.modules:
        spec = importlib.util.spec_from_file_location("parity_case", ROOT / "tests/parity_case.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["parity_case"] = module
        spec.loader.exec_module(module)
    return sys.modules["parity_case"]


case = parity_case()
DRIVERS = ("sync", "async")


@pytest.fixture(scope="module")
def called(tiny_policy, tmp_path_factory):
    """One ``_calculate_rewards`` call of a real GRPOTrainer with the four reward functions."""
    from datasets import Dataset
    from rmr1_trl import AsyncRMR1Reward, RMR1Reward
    from trl import GRPOConfig, GRPOTrainer

    case.register()
    folder = tmp_path_factory.mktemp("trl-parity")
    records, funcs = {}, []
    for driver in DRIVERS:
        for strategy in case.STRATEGIES:
            name = f"rmr1_{driver}_{strategy.replace('-', '_')}"
            config, records[driver, strategy] = case.write_config(folder, name)
            cls = RMR1Reward if driver == "sync" else AsyncRMR1Reward
            funcs.append(cls(str(config), name=name, strategy=strategy))
    rows = [{"prompt": case.PROMPT, "reference": case.REFERENCE}]
    trainer = GRPOTrainer(
        model=str(tiny_policy),
        reward_funcs=funcs,
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
        train_dataset=Dataset.from_list(rows * 3),
    )
    size = len(case.COMPLETIONS)
    inputs = [dict(rows[0]) for _ in range(size)]  # TRL repeats each row num_generations times
    completions = [[{"role": "assistant", "content": c}] for c in case.COMPLETIONS]
    completion_ids = [trainer.processing_class(c)["input_ids"] for c in case.COMPLETIONS]
    rewards = trainer._calculate_rewards(inputs, [case.PROMPT] * size, completions, completion_ids)
    return trainer, funcs, records, rewards.tolist()


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("strategy", case.STRATEGIES)
def test_trl_matches_the_python_api(called, driver, strategy, tmp_path):
    trainer, funcs, records, rewards = called
    column = 2 * DRIVERS.index(driver) + case.STRATEGIES.index(strategy)
    name = funcs[column].__name__
    got = case.Outcome(
        case.judge_prompts(records[driver, strategy]),
        [row[column] for row in rewards],
        trl_logs(trainer, name, len(case.COMPLETIONS)),
    )
    api = case.api(tmp_path, strategy)
    case.assert_same(f"TRL {driver} {strategy}", got, api)
    case.check_judge_saw_the_system_turn(got.prompts)


def trl_logs(trainer, name: str, size: int) -> list[dict]:
    """The per-sample logs TRL received from ``name``: completion-table columns it logged with
    ``log_extra`` under ``<name>/<key>``, one value per completion."""
    prefix = f"{name}/"
    columns = {
        key[len(prefix) :]: values
        for key, values in trainer._pending_extra_logs.items()
        if key.startswith(prefix)
    }
    assert all(len(values) == size for values in columns.values()), columns
    return [{key: values[i] for key, values in columns.items()} for i in range(size)]
