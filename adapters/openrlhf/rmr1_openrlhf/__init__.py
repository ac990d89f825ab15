"""An RM-R1 judge as OpenRLHF's reward function (``--reward.remote_url path/to/file.py``)."""

from __future__ import annotations

from pathlib import Path


def reward_file_path() -> Path:
    """The reward file to pass as ``--reward.remote_url``."""
    return (Path(__file__).parent / "reward_func.py").resolve()


__all__ = ["reward_file_path"]
