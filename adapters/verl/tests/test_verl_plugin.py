"""The ``rmr1`` reward manager is registered whatever is imported first.

Imported before verl, rmr1_verl.manager's ``from verl import ...`` runs veRL's plugin loading,
which imports rmr1_verl.plugin while the manager module is still half loaded; veRL logs the
resulting circular-import error at DEBUG only, so the manager was silently missing.
"""

import subprocess
import sys

import pytest

CHECK = (
    "import logging, {first}\n"
    "from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls\n"
    "from rmr1_verl.manager import RMR1RewardManager\n"
    "assert get_reward_manager_cls('rmr1') is RMR1RewardManager\n"
    "print('registered')\n"
)


@pytest.mark.parametrize("first", ["rmr1_verl.manager", "rmr1_verl.plugin", "verl"])
def test_manager_is_registered_whichever_module_is_imported_first(first):
    done = subprocess.run(
        [sys.executable, "-c", CHECK.format(first=first)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "registered"
    assert "not registered" not in done.stderr  # rmr1_verl.plugin's warning on failure
