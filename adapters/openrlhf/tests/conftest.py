"""Shared by the OpenRLHF adapter tests: the RMR1_CONFIG fixture."""

from __future__ import annotations

import pytest


@pytest.fixture
def configure(tmp_path, monkeypatch):
    """Point RMR1_CONFIG at a YAML file with the given text; the judge is rebuilt per test."""
    from rmr1_openrlhf.reward import reset_runtime

    def write(text: str) -> None:
        path = tmp_path / "rmr1.yaml"
        path.write_text(text)
        monkeypatch.setenv("RMR1_CONFIG", str(path))
        reset_runtime()

    yield write
    reset_runtime()
