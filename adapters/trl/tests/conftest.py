"""Fixtures for the TRL extension: a scripted judge for unit tests, SmolLM2 for real runs."""

from __future__ import annotations

import pytest

from rmr1_plugins import Scorer
from rmr1_plugins.testing import LongerWins


@pytest.fixture
def judge():
    backend = LongerWins()
    return Scorer(backend), backend


@pytest.fixture(scope="session")
def smollm2_dir():
    from rmr1_plugins.testing import smollm2_checkpoint

    return smollm2_checkpoint()


@pytest.fixture(scope="session")
def tiny_policy():
    from rmr1_plugins.testing import tiny_llama

    return tiny_llama()
