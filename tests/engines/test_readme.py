"""The README's commands work as written, the first time (issue 23).

The commands are read from README.md (the ``readme`` fixture, tests/engines/conftest.py), so a
changed README changes what runs. The CPU-sized ones run for real from an empty model cache,
as on a fresh clone: the first judge (``rmr1 score`` on SmolLM2, with fewer new tokens), and the
model helpers of the recipe demo, whose output the shell pastes into ``--student``. The demo
itself runs as the README writes it in ``test_recipe_run.py``; GPU-sized commands are checked
to parse, and their files to exist.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

from rmr1_plugins.cli import build_parser

pytestmark = pytest.mark.model
SMALL = "--max-new-tokens 8"  # the first judge's run here: the README's 64 take minutes on CPU


@pytest.fixture(scope="module")
def fresh(tmp_path_factory, readme):
    """A working folder like a fresh clone's root, an empty model cache, and the environment
    the README's shell would have (this environment's programs first on PATH)."""
    work = tmp_path_factory.mktemp("clone")
    (work / "examples").symlink_to(readme.ROOT / "examples")
    env = dict(os.environ)
    env["RMR1_TEST_CACHE"] = str(work / ".cache" / "rmr1-test-models")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["OMP_NUM_THREADS"] = "1"  # cores shared with other jobs: see the README's timings
    return work, env


def bash(line: str, work: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", line], cwd=work, env=env, capture_output=True, text=True, timeout=600
    )


# How each README command is covered; a new command fails test_every_command_is_covered.
COVERED = {
    "pip install": "install: test_install_lines_name_what_exists",
    "rmr1 score ": "run: test_first_judge_from_an_empty_cache",
    "rmr1 recipe run ": "run: test_recipe_run.py; models: test_recipe_model_helpers_print_a_path",
    "rmr1 eval ": "GPU-sized: test_gpu_sized_commands_parse",
    "RMR1_CONFIG=examples/trl_judge.yaml trl grpo ": "adapters/trl/tests (TRL's own parser)",
    "bash examples/": "GPU-sized: adapters' test_examples (each trainer's own parser)",
}


def test_every_command_is_covered(readme):
    found = readme.commands()
    assert len(found) >= 8
    for line in found:
        assert any(line.startswith(prefix) for prefix in COVERED), line
        for script in re.findall(r"examples/\S+", line):
            assert (readme.ROOT / script).exists(), script


def test_install_lines_name_what_exists(readme):
    from importlib.metadata import metadata

    extras = metadata("rmr1-plugins").get_all("Provides-Extra")
    for line in readme.commands():
        for part in line.split("&&"):
            words = part.split()
            if words[:2] != ["pip", "install"]:
                continue
            skip = False
            for word in words[2:]:
                if skip:
                    skip = False
                    continue
                if word in ("-c", "--index-url"):
                    skip = word == "--index-url"
                    continue
                word = word.strip("'")
                if word == "constraints.txt":
                    assert (readme.ROOT / word).exists()
                elif word.startswith(".[") or word.startswith("./"):
                    path, _, wanted = word.partition("[")
                    assert (readme.ROOT / path / "pyproject.toml").exists(), word
                    for extra in filter(None, wanted.rstrip("]").split(",")):
                        assert extra in extras, word
                elif word.startswith("-"):
                    assert word in ("-e", "--no-deps"), word
                elif word != "nox":  # the one tool the sessions do not install
                    name, _, pinned = word.partition("==")
                    try:
                        assert version(name).startswith(pinned), word  # what nox installs
                    except PackageNotFoundError:
                        pytest.fail(f"{word}: not a package the test environments install")


def test_first_judge_from_an_empty_cache(fresh, readme):
    work, env = fresh
    line = readme.command("rmr1 score ")
    assert "--max-new-tokens 64" in line
    done = bash(line.replace("--max-new-tokens 64", SMALL), work, env)
    assert done.returncode == 0, done.stderr
    assert "converting SmolLM2-135M-Instruct" in done.stderr  # the cache was empty
    results = [json.loads(row) for row in (work / "judgments.jsonl").read_text().splitlines()]
    assert [r["id"] for r in results] == ["math-1", "chat-1", "multi-1"]
    assert all(r["judgments"][0]["completion"] for r in results)  # SmolLM2 wrote something
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("rmr1 score: 3 rows, verdicts A "), last


def test_recipe_model_helpers_print_a_path(fresh, readme):
    """The first run builds each model; the shell pastes the output into a flag, so it must be
    the folder alone (a tokenizer trainer's progress once made it '\\n\\n\\n/path')."""
    work, env = fresh
    line = readme.command("rmr1 recipe run ")
    helpers = readme.substitutions(line)
    assert len(helpers) == 2
    values = {}
    for helper in helpers:
        done = bash(f'printf %s "$({helper})"', work, env)
        assert done.returncode == 0, done.stderr
        path = Path(done.stdout)
        assert path.is_absolute() and (path / "config.json").exists(), repr(done.stdout)
        assert str(path).startswith(env["RMR1_TEST_CACHE"])
        values[helper] = done.stdout
    args = build_parser().parse_args(readme.argv(line, values))
    assert args.student == values["python -m rmr1_plugins.testing tiny-llama"]
    assert args.teacher_model == values["python -m rmr1_plugins.testing smollm2"]


def test_gpu_sized_commands_parse(readme):
    args = build_parser().parse_args(readme.argv(readme.command("rmr1 eval "), {}))
    assert (args.benchmark, args.backend, args.parser) == ("rewardbench", "vllm", "rmr1-eval")
