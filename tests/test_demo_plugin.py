"""A real installed plugin package is discovered through the ``rmr1_plugins`` entry point.

The ``core`` nox session installs tests/plugins/rmr1_demo_plugin and sets
RMR1_EXPECT_DEMO_PLUGIN=1, so there this test must run (it is skipped only outside nox).
"""

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

installed = any(ep.name == "demo" for ep in entry_points(group="rmr1_plugins"))
if os.environ.get("RMR1_EXPECT_DEMO_PLUGIN") == "1":
    assert installed, "the core session should have installed tests/plugins/rmr1_demo_plugin"
pytestmark = pytest.mark.skipif(not installed, reason="rmr1-demo-plugin not installed")


def run(*args, env=None, stdin=""):
    return subprocess.run(
        [sys.executable, "-m", "rmr1_plugins.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_installed_plugin_is_listed_with_its_package():
    done = run("plugins")
    assert done.returncode == 0
    assert "final-line" in done.stdout and "rmr1-demo-plugin 0.0.1" in done.stdout


def test_installed_plugin_parser_is_usable_and_blockable():
    done = run("parse", "--rule", "final-line", stdin=json.dumps({"completion": "FINAL: B"}))
    assert json.loads(done.stdout) == {"verdict": "B"}
    blocked = run(
        "parse", "--rule", "final-line", env={"RMR1_DISABLED_PLUGINS": "demo"}, stdin="{}"
    )
    assert blocked.returncode == 2 and "unknown parser 'final-line'" in blocked.stderr
