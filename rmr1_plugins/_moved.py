"""The old module paths of the reward layer, kept one release (docs/core.md, "Renamed").

``rmr1_plugins.grouping`` and its siblings moved into :mod:`rmr1_plugins.rewards`; each old
module is a stub whose attributes are looked up in the new modules, with a warning naming them.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any

from rmr1_plugins.errors import RMR1DeprecationWarning


def moved(old: str, *new: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` for the stub ``old``: each name from the first of ``new`` that
    has it."""

    def __getattr__(name: str) -> Any:
        for module in new:
            target = importlib.import_module(module)
            if hasattr(target, name):
                warnings.warn(
                    f"{old} moved to {module}; import {name} from there (the old path goes in "
                    "the next release)",
                    RMR1DeprecationWarning,
                    stacklevel=2,
                )
                return getattr(target, name)
        raise AttributeError(f"module {old!r} has no attribute {name!r} (it moved: {new[0]})")

    return __getattr__
