"""Real-engine fixtures: each engine is started once per test session and shared."""

from __future__ import annotations

import pytest

from rmr1_plugins.testing import smollm2_checkpoint


@pytest.fixture(scope="session")
def smollm2_dir():
    """SmolLM2-135M-Instruct as a checkpoint folder (converted from the shipped GGUF once)."""
    return smollm2_checkpoint()


@pytest.fixture(scope="session")
def hf_backend(smollm2_dir):
    from rmr1_plugins.backends.hf import HFBackend

    backend = HFBackend(str(smollm2_dir), {"dtype": "float32", "batch_size": 8})
    yield backend
    backend.close()
