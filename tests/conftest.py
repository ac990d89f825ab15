"""Shared fixtures for the core tests (no model weights here; see tests/engines for those)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rmr1_plugins.backends.base import Backend, Generation, SamplingParams
from rmr1_plugins.config import deep_merge
from rmr1_plugins.guards import neutralize_markup

neutralize_markup("é")  # build the guard's code point table once, not inside a timed example


class ScriptedBackend(Backend):
    """A fake judge for unit tests: answers from a function of the rendered user message."""

    name = "scripted"

    def __init__(self, answer=None) -> None:
        super().__init__("scripted-model")
        self.answer = answer or (lambda user, i: "<answer>[[A]]</answer>")
        self.batches: list[list] = []

    def generate(self, conversations, params: SamplingParams):
        self.batches.append(list(conversations))
        return [
            [
                Generation(self.answer(conv[-1]["content"], i), "stop")
                for i in range(params.num_samples)
            ]
            for conv in conversations
        ]


@pytest.fixture
def scripted():
    return ScriptedBackend


def pair(question="2+2?", a="4", b="5", label=None, id=None):
    from rmr1_plugins import PairwiseExample

    return PairwiseExample(
        id=id,
        context=[{"role": "user", "content": question}],
        response_a=a,
        response_b=b,
        label=label,
    )


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
