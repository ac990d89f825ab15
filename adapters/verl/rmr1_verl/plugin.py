"""veRL plugin (entry-point group ``verl.plugins``): registers the ``rmr1`` reward manager.

veRL imports this module on every ``import verl`` (driver, TaskRunner and RewardLoopWorker
processes) and logs a failure at DEBUG level only, after which the trainer fails with "Unknown
reward manager: rmr1". The failure is therefore also logged here as a warning; run
``python -m rmr1_verl check`` to see it in full.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

try:
    from verl.experimental.reward_loop.reward_manager import register

    from rmr1_verl.manager import RMR1RewardManager

    register("rmr1")(RMR1RewardManager)
except Exception as error:
    logger.warning(
        "rmr1-plugins-verl: the 'rmr1' reward manager is not registered (%s: %s); "
        "run `python -m rmr1_verl check`",
        type(error).__name__,
        error,
    )
    raise
