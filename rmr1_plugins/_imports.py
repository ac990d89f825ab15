"""Optional dependencies: import on demand, and name the extra to install when missing."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise ``ImportError`` telling which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{module!r} is needed here but could not be imported ({error}); "
            f"install the {extra!r} extra: pip install -e '.[{extra}]' in the rmr1-plugins "
            "repository"
        ) from error
