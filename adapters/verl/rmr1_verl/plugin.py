"""veRL plugin (entry-point group ``verl.plugins``): registers the ``rmr1`` reward manager.

veRL imports this module on every ``import verl`` (driver, TaskRunner and RewardLoopWorker
processes) and logs a failure at DEBUG level only, after which the trainer fails with "Unknown
reward manager: rmr1". The failure is therefore also logged here as a warning; run
``python -m rmr1_verl check`` to see it in full.

The manager module registers itself when it finishes loading. Importing it here is enough in both
orders: after ``import verl`` it loads now; imported first (``import rmr1_verl.manager``, whose
``from verl import ...`` runs this plugin), it is still loading, and registers once it is done.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

try:
    import rmr1_verl.manager  # noqa: F401 - registers the "rmr1" reward manager
except Exception as error:
    logger.warning(
        "rmr1-plugins-verl: the 'rmr1' reward manager is not registered (%s: %s); "
        "run `python -m rmr1_verl check`",
        type(error).__name__,
        error,
    )
    raise
