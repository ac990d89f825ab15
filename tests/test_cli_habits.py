"""Daily use of the command line (issue 23): summary lines, ids, version and environment
reports, a closed pipe, mistyped flags, and variables named in configuration errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rmr1_plugins.backends.base import Backend, Generation
from rmr1_plugins.cli import Tally, main
from rmr1_plugins.testing import response_slots
from rmr1_plugins.testing.judges import backends_registered


def pair(a, b, **extra):
    return {"context": [{"role": "user", "content": "Which?"}], "response_a": a, "response_b": b}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


class Counted(Backend):
    """The longer response wins and each completion counts 5 tokens; ``??`` gets no verdict."""

    name = "counted"

    def generate(self, conversations, params):
        out = []
        for conversation in conversations:
            a, b = response_slots(conversation[-1]["content"])
            text = f"<answer>[[{'A' if len(a) > len(b) else 'B'}]]</answer>"
            out.append([Generation("no idea" if "??" in a + b else text, "stop", 5)])
        return out


@pytest.fixture
def counted():
    with backends_registered({"counted": Counted}):
        yield


def summary(err, command):
    [line] = [x for x in err.splitlines() if x.startswith(f"rmr1 {command}: ")]
    assert err.rstrip().endswith(line)  # the last line on stderr
    return line


def test_score_ends_with_a_summary_and_fills_missing_ids(tmp_path, capsys, counted):
    rows = [{**pair("long one", "x"), "id": "first"}, pair("x", "longer"), pair("??", "y")]
    out = tmp_path / "out.jsonl"
    assert main(["score", write_jsonl(tmp_path / "in.jsonl", rows), "--backend", "counted",
                 "-o", str(out)]) == 0  # fmt: skip
    line = summary(capsys.readouterr().err, "score")
    assert "3 rows, verdicts A 1 / B 1 / none 1, unparsed 33% of 3 judgments" in line
    assert "tokens/s" in line
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["first", "2", "3"]


def test_score_summary_leaves_out_tokens_a_backend_does_not_count(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", [pair("a", "b")])
    assert main(["score", src, "--backend", "constant", "--order", "both", "-o", "-"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["id"] == "1"
    line = summary(captured.err, "score")
    assert "1 row, verdicts A 0 / B 0 / none 1, unparsed 0% of 2 judgments" in line
    assert "tokens/s" not in line  # orders disagree: no verdict, but both judgments parsed


def test_tally_line():
    tally = Tally("eval")
    tally.add("A", ["A", None])
    tally.add(None, [None, None])
    tally.tokens = 30
    assert tally.line(seconds=2.0) == (
        "rmr1 eval: 2 rows, verdicts A 1 / B 0 / none 1, unparsed 75% of 4 judgments, 2.0 s, "
        "15.0 tokens/s"
    )


def test_parse_output_has_ids_and_a_summary(tmp_path, capsys):
    rows = [{"completion": "<answer>[[B]]</answer>", "id": 7}, {"completion": "none", "id": None}]
    assert main(["parse", write_jsonl(tmp_path / "c.jsonl", rows)]) == 0
    captured = capsys.readouterr()
    assert [json.loads(x) for x in captured.out.splitlines()] == [
        {"id": 7, "verdict": "B"},
        {"id": "2", "verdict": None},
    ]
    assert "2 rows, verdicts A 0 / B 1 / none 1, unparsed 50%" in summary(captured.err, "parse")


def test_render_ids_are_never_null(tmp_path, capsys):
    assert main(["render", write_jsonl(tmp_path / "in.jsonl", [pair("a", "b")])]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == "1"


def rmr1(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "rmr1_plugins.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


def test_a_closed_pipe_ends_quietly(tmp_path):
    # 200 rendered prompts (about 600 kB) cannot fit in a pipe's buffer: the writer must meet
    # the closed pipe, after the reader took one line and left.
    src = write_jsonl(tmp_path / "in.jsonl", [pair("a", "b")] * 200)
    command = [sys.executable, "-m", "rmr1_plugins.cli", "render", src]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert json.loads(process.stdout.readline())["id"] == "1"
        process.stdout.close()
        err = process.stderr.read().decode()
        assert process.wait(timeout=120) in (0, 141)
    assert err == ""


def test_version_and_env():
    from rmr1_plugins import __version__

    done = rmr1("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"rmr1-plugins {__version__}"
    done = rmr1("env")
    assert done.returncode == 0, done.stderr
    keys = [line.split(":")[0] for line in done.stdout.splitlines() if not line.startswith(" ")]
    for name in ("python", "rmr1-plugins", "torch", "transformers", "vllm", "trl", "verl"):
        assert name in keys
    assert "openrlhf" in keys
    assert "  builtin: rmr1_plugins.builtins [rmr1-plugins" in done.stdout


def test_env_imports_no_engine():
    # Any attempt to import an engine is recorded (installed or not), before it could succeed.
    code = """
import sys
HEAVY = {"torch", "transformers", "vllm", "trl", "verl", "openrlhf", "datasets", "matplotlib"}
tried = []
class Spy:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            tried.append(name)
        return None
sys.meta_path.insert(0, Spy())
from rmr1_plugins.cli import main
main(["env"])
print("tried", sorted(set(tried)))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "tried []", done.stdout


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["score", "in.jsonl", "--max-new-tokns", "3"], "(did you mean --max-new-tokens?)"),
        (["eval", "--benchmark", "rmb", "--on-unparesd=wrong"], "(did you mean --on-unparsed?)"),
        (["recipe", "run", "x", "-o", "y", "--studnt", "z"], "(did you mean --student?)"),
    ],
)
def test_a_mistyped_flag_gets_a_suggestion(argv, hint):
    done = rmr1(*argv)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"rmr1 {argv[0]}") and "unrecognized arguments" in last, last
    assert last.endswith(hint), last


def test_config_errors_name_the_variable(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [pair("a", "b")])
    env = {"RMR1_SAMPLING__TEMPERATURE": "abc", "RMR1_REWARD__SERVICE__TIMEOUT_S": "x"}
    done = rmr1("score", src, "--backend", "constant", env={**os.environ, **env})
    assert done.returncode == 2
    assert "sampling.temperature: " in done.stderr
    assert "(from RMR1_SAMPLING__TEMPERATURE)" in done.stderr
    assert (
        "reward.service.timeout_s: " in done.stderr
        and "(from RMR1_REWARD__SERVICE__TIMEOUT_S)" in done.stderr
    )


def test_a_flag_over_a_variable_is_not_blamed_on_it(monkeypatch):
    from rmr1_plugins.config import ConfigError
    from rmr1_plugins.settings import load_config

    monkeypatch.setenv("RMR1_SAMPLING__TEMPERATURE", "0.5")
    with pytest.raises(ConfigError) as error:
        load_config(sampling={"temperature": -1})
    assert "sampling.temperature" in str(error.value) and "RMR1_" not in str(error.value)
    monkeypatch.setenv("RMR1_BACKEND__NMAE", "x")
    with pytest.raises(ConfigError, match=r"backend.nmae: unknown key \(from RMR1_BACKEND__NMAE"):
        load_config()


def test_model_helpers_print_only_the_path(tmp_path):
    # The builder's own output, from Python or native code (a tokenizer trainer's progress bar),
    # goes to stderr, so that `--student "$(python -m rmr1_plugins.testing tiny-llama)"` works.
    code = (
        "import os, sys, pathlib; from rmr1_plugins import testing\n"
        "def noisy(target=None):\n"
        "    os.write(1, b'\\n\\n'); print('progress'); sys.stdout.write('more\\n')\n"
        f"    return pathlib.Path({str(tmp_path)!r})\n"
        "testing.tiny_llama = noisy\n"
        "testing.main(['tiny-llama'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{tmp_path}\n"
    assert "progress" in done.stderr and "more" in done.stderr


EXAMPLES = Path(__file__).parents[1] / "examples"


def test_the_docs_openai_config_serves_with_another_backend():
    from rmr1_plugins.testing.serving import PROMPT, Server

    running = Server(
        "--config", str(EXAMPLES / "rmr1-openrlhf.yaml"), backend="constant", num_samples=None
    )
    try:
        request = {"query": [PROMPT + "Hi.<|im_end|>"], "prompts": [PROMPT], "labels": ["Hello."]}
        status, answer = running.post("/get_reward", request)
    finally:
        assert running.stop() == 0
    assert status == 200 and len(answer["rewards"]) == 1
    note = "note: backend constant replaces openai: openai's options left out (base_url)"
    assert note in running.logged()


def test_a_backend_switch_drops_only_the_lower_layers_options():
    from rmr1_plugins.config import merge_layers

    file = {"backend": {"name": "openai", "model": "m", "options": {"base_url": "u"}}}
    merged, notes = merge_layers(file, {}, {"backend": {"name": "constant"}})
    assert merged["backend"] == {"name": "constant", "model": "m"} and len(notes) == 1
    assert merge_layers(file, {"backend": {"name": "openai"}}) == (file, [])  # no switch
    given = {"backend": {"name": "hf", "options": {"batch_size": 2}}}
    merged, notes = merge_layers(file, given)  # the switch's own options are kept
    assert merged["backend"]["options"] == {"batch_size": 2} and len(notes) == 1


EVAL_DATA = Path(__file__).parent / "data" / "eval"
EVAL_FILES = {
    "rewardbench": EVAL_DATA / "rewardbench_filtered.jsonl",
    "rm-bench": EVAL_DATA / "rm-bench_total_dataset.json",
    "rmb": EVAL_DATA / "rmb",
    "judgebench": EVAL_DATA / "judgebench.jsonl",
    "rewardbench2": EVAL_DATA / "rewardbench2_test.jsonl",
}


@pytest.mark.parametrize("given", EVAL_FILES)
@pytest.mark.parametrize("asked", EVAL_FILES)
def test_a_file_of_another_benchmark_says_which_it_looks_like(asked, given):
    from rmr1_plugins.eval.loaders import load, usable
    from rmr1_plugins.eval.sources import SourceError

    loaded = load(asked, [str(EVAL_FILES[given])])
    if asked == given:
        assert usable(loaded) is loaded
        return
    with pytest.raises(SourceError) as error:
        usable(loaded)
    assert f"is a {asked} row" in str(error.value)
    assert str(error.value).endswith(f"they look like {given} rows: --benchmark {given}")


def test_eval_of_another_benchmarks_file_exits_2(tmp_path, capsys):
    argv = ["eval", "--benchmark", "rewardbench", "--data", str(EVAL_FILES["rm-bench"])]
    assert main([*argv, "--backend", "constant", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {EVAL_FILES['rm-bench']}: none of its 6 rows is a rewardbench")
    assert err.rstrip().endswith("they look like rm-bench rows: --benchmark rm-bench")
    assert not (tmp_path / "out").exists()


def test_eval_ends_with_a_summary(tmp_path, capsys):
    argv = ["eval", "--benchmark", "judgebench", "--data", str(EVAL_FILES["judgebench"])]
    assert main([*argv, "--backend", "constant", "-o", str(tmp_path / "out")]) == 0
    line = summary(capsys.readouterr().err, "eval")
    # JudgeBench judges both orders; the constant judge says A in both, so they disagree
    assert "6 comparisons, verdicts A 0 / B 0 / none 6, unparsed 0% of 12 judgments" in line


def test_recipe_stages_end_with_a_summary(tmp_path, capsys):
    preferences = Path(__file__).parents[1] / "examples" / "recipe" / "preferences.jsonl"
    data = tmp_path / "data"
    argv = ["recipe", "prepare", str(preferences), "-o", str(data), "--max-prompt-tokens", "0"]
    assert main([*argv, "--distill-fraction", "0.5"]) == 0
    line = summary(capsys.readouterr().err, "recipe prepare")
    assert "12 rows read, 12 pairs (" in line and "distill 6" in line
    argv = ["recipe", "distill", str(data / "distill.jsonl"), "-o", str(tmp_path / "distill")]
    main([*argv, "--backend", "constant", "--no-second-pass"])
    line = summary(capsys.readouterr().err, "recipe distill")
    assert "6 rows, pass 1 right " in line and " SFT rows kept, " in line


def test_recipe_names_checkpointing_as_the_installed_transformers_does():
    """transformers 5.25 renamed gradient_checkpointing to activation_checkpointing and warns
    when only the old name is set, which TRL 1.16's configs do by default. ``Renamed`` copies
    that rule (training_args.py of 5.25); ``Old`` is a transformers before the rename."""
    import dataclasses
    import warnings

    from rmr1_plugins.recipe.run import checkpointing_fields

    @dataclasses.dataclass
    class Renamed:
        activation_checkpointing: bool | None = None
        activation_checkpointing_kwargs: dict | None = None
        gradient_checkpointing: bool | None = True  # TRL's default
        gradient_checkpointing_kwargs: dict | None = None
        max_steps: int = -1

        def __post_init__(self):
            for old, new in (
                ("gradient_checkpointing", "activation_checkpointing"),
                ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs"),
            ):
                if getattr(self, new) is None and getattr(self, old) is not None:
                    warnings.warn(f"`{old}` is deprecated", FutureWarning, stacklevel=2)
                    setattr(self, new, getattr(self, old))
                setattr(self, old, getattr(self, new))

    @dataclasses.dataclass
    class Old:
        gradient_checkpointing: bool = True
        gradient_checkpointing_kwargs: dict | None = None

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for given in ({}, {"gradient_checkpointing": False, "max_steps": 2}):
            args = Renamed(**checkpointing_fields(Renamed, given))
            assert args.activation_checkpointing is given.get("gradient_checkpointing", True)
        with pytest.raises(FutureWarning):
            Renamed(gradient_checkpointing=False)  # the call the recipe made before
    given = {"gradient_checkpointing": False, "max_steps": 2}
    assert checkpointing_fields(Old, given) == given
