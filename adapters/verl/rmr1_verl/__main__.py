"""``python -m rmr1_verl check``: verify that veRL will find the rmr1 reward pieces.

veRL swallows plugin import errors (logged at DEBUG), so a broken install only shows up later as
"Unknown reward manager: rmr1". This command runs each step veRL runs and says which one fails.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import traceback
from collections.abc import Callable
from importlib.metadata import entry_points

ENTRY_POINT = "rmr1_verl.plugin"


def _step(name: str, check: Callable[[], str]) -> bool:
    try:
        detail = check()
    except Exception as error:
        print(f"error: {name}: {type(error).__name__}: {error}")
        if not isinstance(error, (LookupError, ValueError)):
            traceback.print_exc(limit=3)
        return False
    print(f"ok: {name}: {detail}")
    return True


def _entry_point() -> str:
    found = [ep for ep in entry_points(group="verl.plugins") if ep.name == "rmr1"]
    if not found:
        raise LookupError(
            "no 'rmr1' entry point in group verl.plugins: install the package "
            "(pip install ./adapters/verl from the repository), or set "
            "VERL_USE_EXTERNAL_MODULES=rmr1_verl.plugin"
        )
    if found[0].value != ENTRY_POINT:
        raise LookupError(f"'rmr1' points at {found[0].value!r}, expected {ENTRY_POINT!r}")
    return f"rmr1 = {ENTRY_POINT}"


def _registered() -> str:
    import verl
    from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls

    try:
        cls = get_reward_manager_cls("rmr1")
    except ValueError:
        import rmr1_verl.plugin  # noqa: F401 - raises the real import error, if any

        raise LookupError(
            "import verl did not register 'rmr1' (entry point missing, or plugins disabled by "
            "VERL_USE_EXTERNAL_PLUGINS)"
        ) from None
    return f"veRL {verl.__version__} has reward manager 'rmr1' = {cls.__module__}.{cls.__name__}"


def _compute_score() -> str:
    from verl.utils.import_utils import load_extern_object

    found = []
    for name in ("compute_score", "verl_verifiable_reward"):
        fn = load_extern_object("pkg://rmr1_verl.reward", name)
        found.append(f"{name} ({'async' if inspect.iscoroutinefunction(fn) else 'sync'})")
    return "pkg://rmr1_verl.reward loads " + ", ".join(found)


def _config() -> str:
    from rmr1_plugins.plugins import get_backend_class
    from rmr1_plugins.settings import load_reward_settings

    config = load_reward_settings()
    strategy = config.reward.build_strategy()
    backend = config.scorer.backend
    get_backend_class(backend.name).Options.model_validate(backend.options)
    note = ""
    if backend.model is None and backend.name != "constant":
        note = " (no model: fine when veRL serves the judge, reward.reward_model.enable=True)"
    return (
        f"judge {backend.name}:{backend.model}{note}, template {config.scorer.template}, "
        f"strategy {strategy.name}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rmr1_verl", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["check"])
    parser.parse_args(argv)
    steps = [
        ("entry point", _entry_point),
        ("registration", _registered),
        ("compute_score", _compute_score),
        ("config ($RMR1_CONFIG)", _config),
    ]
    results = [_step(name, check) for name, check in steps]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
