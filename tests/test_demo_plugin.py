"""A real installed plugin package is discovered through the ``rmr1_plugins`` entry point.

The ``core`` nox session installs tests/plugins/rmr1_demo_plugin and sets
RMR1_EXPECT_DEMO_PLUGIN=1, so there this test must run (it is skipped only outside nox).
"""

import doctest
import json
import os
import re
import shlex
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

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
    done = run("parse", "--parser", "final-line", stdin=json.dumps({"completion": "FINAL: B"}))
    assert json.loads(done.stdout) == {"id": "1", "verdict": "B"}  # no id: the line number
    blocked = run(
        "parse", "--parser", "final-line", env={"RMR1_DISABLED_PLUGINS": "demo"}, stdin="{}"
    )
    assert blocked.returncode == 2 and "unknown parser 'final-line'" in blocked.stderr


# The console script that `pip install rmr1-plugins` puts beside the interpreter.
RMR1 = str(Path(sys.executable).with_name("rmr1"))


def rmr1(*args, env=None):
    return subprocess.run(
        [RMR1, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


def test_plugin_subcommand_runs_through_the_rmr1_entry_point(tmp_path):
    assert Path(RMR1).is_file(), "rmr1-plugins is installed, so its rmr1 script is too"
    rows = ["FINAL: A", "FINAL: B", "no verdict", "FINAL: A then FINAL: B"]
    data = tmp_path / "completions.jsonl"
    data.write_text("".join(json.dumps({"completion": c}) + "\n" for c in rows))
    done = rmr1("demo-tally", str(data))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"A": 1, "B": 2, "none": 1}
    assert "demo-tally" in rmr1("--help").stdout


def test_plugin_usage_error_is_one_error_line_and_exit_2(tmp_path):
    data = tmp_path / "completions.jsonl"
    data.write_text('{"completion": "FINAL: A"}\n{"completion": 3}\n')
    done = rmr1("demo-tally", str(data))
    assert done.returncode == 2
    assert done.stderr == f"error: {data}, line 2: field 'completion' must be a string\n"


def test_blocked_plugin_adds_no_subcommand():
    done = rmr1("demo-tally", "-", env={"RMR1_DISABLED_PLUGINS": "demo"})
    assert done.returncode == 2 and "invalid choice: 'demo-tally'" in done.stderr


# docs/plugins.md is the plugin author's guide; its worked example is this package's code.
GUIDE = Path(__file__).parents[1] / "docs" / "plugins.md"
QUOTE = re.compile(r"<!-- quoted from (\S+) -->\n```\w*\n(.*?)^```", re.S | re.M)


def test_the_guides_quotes_are_the_demo_plugins_code():
    quotes = QUOTE.findall(GUIDE.read_text())
    assert len(quotes) >= 8  # the entry point, imports, four kinds, the hooks, the subcommand
    for path, code in quotes:
        source = (GUIDE.parents[1] / path).read_text()
        assert code in source, f"docs/plugins.md quotes {path} as it no longer is:\n{code}"


def test_one_of_each_kind_is_registered_with_its_package():
    listed = run("plugins").stdout
    for kind, name in [
        ("templates", "final-line"),
        ("parsers", "final-line"),
        ("backends", "demo-shorter"),
        ("strategies", "demo-ladder"),
    ]:
        section = listed.split(f"{kind}:\n", 1)[1].split(":\n", 1)[0]
        assert f"{name} " in section and "rmr1-demo-plugin" in section, (kind, section)


def test_the_guides_python_session_runs():
    result = doctest.testfile(str(GUIDE), module_relative=False)
    assert result.attempted >= 6 and result.failed == 0


def test_the_guides_command_judges_with_the_plugins_template_parser_and_backend():
    [line] = [c for c in re.findall(r"^rmr1 score .*$", GUIDE.read_text(), re.M)]
    done = rmr1(*shlex.split(line)[1:])
    assert done.returncode == 0, done.stderr
    rows = {row["id"]: row for row in map(json.loads, done.stdout.splitlines())}
    # equal lengths: the tie-break answers A in both orders, so the orders disagree
    assert rows["math-1"]["verdict"] is None and rows["math-1"]["orders_agree"] is False
    assert rows["chat-1"]["verdict"] == "A" and rows["chat-1"]["orders_agree"] is True
    completion = rows["chat-1"]["judgments"][0]["completion"]
    assert completion == "FINAL: A"  # demo-shorter answered a final-line prompt
    blocked = rmr1(*shlex.split(line)[1:], env={"RMR1_DISABLED_PLUGINS": "demo"})
    assert blocked.returncode == 2 and "unknown template 'final-line'" in blocked.stderr
