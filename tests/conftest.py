"""Shared fixtures for the core tests (no model weights here; see tests/engines for those)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rmr1_plugins.config import deep_merge
from rmr1_plugins.guards import neutralize_markup
from rmr1_plugins.testing import ScriptedJudge

neutralize_markup("é")  # build the guard's code point table once, not inside a timed example


@pytest.fixture
def scripted():
    return ScriptedJudge


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def shared_config(tmp_path):
    """Writes one YAML file for every integration: the scorer and group keys of the TRL/veRL
    example, the per-sample service keys of the OpenRLHF example, then ``reward`` on top."""

    def write(**reward):
        config = yaml.safe_load((EXAMPLES / "rmr1_judge.yaml").read_text())
        service = yaml.safe_load((EXAMPLES / "rmr1-openrlhf.yaml").read_text())["reward"]
        config["backend"] = {"name": "constant"}
        config["reward"] = deep_merge(deep_merge(config["reward"], service), reward)
        path = tmp_path / "shared.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    return write
