"""pytest fixtures over :mod:`rmr1_plugins.testing`, for every test folder: pyproject.toml loads
this module as a pytest plugin (``-p rmr1_plugins.testing.fixtures``). A plugin's own tests can
load it the same way."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rmr1_plugins.testing import judges


@pytest.fixture
def fake_judges() -> Iterator[None]:
    """The scripted judges of :mod:`rmr1_plugins.testing.judges` registered by name for the test
    (``backend: {name: votes}`` and so on), as an installed plugin's would be; gone after."""
    with judges.fake_judges():
        yield


def pytest_collection_finish(session: pytest.Session) -> None:
    """A test module that changes the plugin registry when imported changes it for every test
    after it: compare the registry after collection with a freshly loaded one."""
    from rmr1_plugins.plugins import Plugins, get_plugins

    loaded, fresh = get_plugins().registries, Plugins().registries
    changed = [
        f"{kind} {name!r}"
        for kind in loaded
        for name in sorted(set(loaded[kind].entries) ^ set(fresh[kind].entries))
    ]
    if changed:
        raise pytest.UsageError(
            "a test module changed the plugin registry at import: "
            + ", ".join(changed)
            + " (register in a fixture: rmr1_plugins.testing.judges.registered)"
        )
