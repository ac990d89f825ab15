"""Fixtures for the veRL extension (its rollouts and configs: rmr1_plugins.testing.verl)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tokenizer():
    """The tiny Llama's byte-level tokenizer: real tokenisation, no weights needed."""
    from transformers import AutoTokenizer

    from rmr1_plugins.testing import tiny_llama

    return AutoTokenizer.from_pretrained(tiny_llama())


@pytest.fixture(scope="session")
def smollm2_dir():
    from rmr1_plugins.testing import smollm2_checkpoint

    return smollm2_checkpoint()
