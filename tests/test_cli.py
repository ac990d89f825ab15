import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest

from rmr1_plugins.backends.base import Backend, BackendOptions, Generation
from rmr1_plugins.cli import main
from rmr1_plugins.testing.judges import backends_registered

PAIR = {
    "id": "p1",
    "context": [{"role": "user", "content": "2+2?"}],
    "response_a": "4",
    "response_b": "5",
}


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def lines(text):
    return [json.loads(line) for line in text.splitlines()]


def test_render(tmp_path, capsys):
    assert (
        main(["render", "--template", "rmr1-reasoning", write_jsonl(tmp_path / "in.jsonl", [PAIR])])
        == 0
    )
    [row] = lines(capsys.readouterr().out)
    assert row["id"] == "p1" and row["messages"][0]["role"] == "user"
    assert "[Client Question]\n2+2?" in row["messages"][0]["content"]


def test_render_reads_stdin(monkeypatch, capsys):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(PAIR) + "\n"))
    assert main(["render", "-"]) == 0
    assert len(lines(capsys.readouterr().out)[0]["messages"]) == 2


def test_parse_rules(tmp_path, capsys):
    rows = [
        {"id": 1, "completion": "x <answer>[[B]]</answer>", "label": "model_b"},
        {"completion": "[[A]] and [[B]]", "label": "A"},
    ]
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    assert main(["parse", "--parser", "rmr1-train", path]) == 0
    assert lines(capsys.readouterr().out) == [
        {"id": 1, "verdict": "B", "reward": 1.0},
        {"id": "2", "verdict": None, "reward": -1.0},  # no id: the line number
    ]
    assert main(["parse", "--parser", "rmr1-eval", path]) == 0
    assert lines(capsys.readouterr().out) == [
        {"id": 1, "verdict": "B"},
        {"id": "2", "verdict": None},
    ]


@pytest.mark.parametrize(
    ("rows", "argv", "message"),
    [
        ([PAIR, "{broken"], ["render"], "in.jsonl, line 2: not valid JSON"),
        (
            [PAIR, {**PAIR, "response_b": None}],
            ["render"],
            "line 2: field 'response_b': Input should be a valid string",
        ),
        (
            [{k: v for k, v in PAIR.items() if k != "response_a"}],
            ["render"],
            "line 1: field 'response_a': Field required",
        ),
        (
            [
                {
                    **PAIR,
                    "context": [
                        {"role": "system", "content": "s"},
                        {"role": "user", "content": "q"},
                    ],
                }
            ],
            ["render"],
            "line 1: field 'context': context turn 0 has role 'system'",
        ),
        ([{**PAIR, "label": "C"}], ["render"], "line 1: field 'label'"),
        (
            [{"completion": "x"}],
            ["parse", "--parser", "rmr1-train"],
            "line 1: field 'label': required",
        ),
        ([{"completion": 3}], ["parse"], "line 1: field 'completion': must be a string"),
        (
            [{"completion": "x", "label": "tie"}],
            ["parse", "--parser", "rmr1-train"],
            "line 1: field 'label': label must be",
        ),
        ([[1, 2]], ["parse"], "line 1: expected a JSON object, got list"),
        ([PAIR], ["render", "--template", "nope"], "unknown template 'nope'"),
    ],
)
def test_bad_input_is_a_clear_error_with_exit_2(tmp_path, capsys, rows, argv, message):
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    assert main([*argv, path]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err
    if len(rows) == 2:  # the good row before the bad one was written
        assert len(lines(captured.out)) == 1


def test_invalid_utf8_is_reported_by_line(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(json.dumps(PAIR).encode() + b"\n" + b'{"x": "\xff"}\n')
    assert main(["render", str(path)]) == 2
    assert "not valid UTF-8" in capsys.readouterr().err


def test_score_with_constant_backend_and_config_flags(tmp_path, capsys):
    trl_row = {"prompt": "2+2?", "chosen": "4", "rejected": "5"}
    src = write_jsonl(tmp_path / "in.jsonl", [PAIR, trl_row])
    out = tmp_path / "out.jsonl"
    argv = [
        "score",
        src,
        "-o",
        str(out),
        "--backend",
        "constant",
        "--order",
        "both",
        "--batch-size",
        "1",
    ]
    argv += ["--backend-option", "completion=<answer>[[A]]</answer>"]
    assert main(argv) == 0
    results = lines(out.read_text())
    assert [r["id"] for r in results] == ["p1", "2"]  # a row without an id: its line
    assert (
        results[0]["votes"] == {"A": 1, "B": 1, "none": 0} and results[0]["orders_agree"] is False
    )
    assert results[1]["label"] == "A" and len(results[1]["judgments"]) == 2


def test_score_rejects_bad_input_before_loading_a_model(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", [PAIR, {"context": []}])
    out = tmp_path / "out.jsonl"
    assert main(["score", src, "-o", str(out), "--backend", "hf", "--model", "/nonexistent"]) == 2
    assert "line 2: field 'context'" in capsys.readouterr().err
    assert not out.exists()


def test_score_config_errors(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", [PAIR])
    assert main(["score", src, "--backend", "nope"]) == 2
    assert "unknown backend 'nope'" in capsys.readouterr().err
    assert main(["score", src, "--backend", "constant", "--backend-option", "oops"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["score", src, "--backend", "constant", "--temperature", "-1"]) == 2
    assert "sampling.temperature" in capsys.readouterr().err
    assert main(["score", src, "--backend", "hf"]) == 2
    assert "cannot build backend 'hf': the hf backend needs a model" in capsys.readouterr().err


def test_plugins_command(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "rmr1-instruct" in out and "builtin" in out and "backends:" in out


@pytest.mark.skipif(shutil.which("rmr1") is None, reason="console script not installed")
def test_console_script_entry_point(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"completion": "<answer>[[B]]</answer>"}])
    done = subprocess.run(["rmr1", "parse", src], capture_output=True, text=True)
    assert done.returncode == 0 and json.loads(done.stdout) == {"id": "1", "verdict": "B"}


# -- user errors: one `error:` line, exit code 2, no traceback (issue 10, item 6) -----------

PREFERENCES = str(Path(__file__).parents[1] / "examples" / "recipe" / "preferences.jsonl")
SERVING = "rmr1_plugins.testing.serving"  # the real CLI with the `votes` judge added
SYSTEM_PAIR = {**PAIR, "id": "s", "context": [{"role": "system", "content": "s"}, *PAIR["context"]]}


def rmr1(*args, stdout=None, script=None):
    command = [sys.executable, "-m", script or "rmr1_plugins.cli"]
    kwargs = {"stdout": stdout} if stdout is not None else {"stdout": subprocess.PIPE}
    return subprocess.run(
        [*command, *map(str, args)], stderr=subprocess.PIPE, text=True, timeout=120, **kwargs
    )


def assert_one_error(done, code, message):
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == code, done.stderr
    assert len(errors) == 1 and message in errors[0], done.stderr
    assert "Traceback" not in done.stderr


def deep_row(depth):
    return '{"completion": "x", "id": ' + "[" * depth + "]" * depth + "}"


@pytest.mark.parametrize(
    ("rows", "argv", "message"),
    [
        (None, ["render", "{missing}"], "missing.jsonl: cannot read it (No such file"),
        (None, ["parse", "{missing}"], "missing.jsonl: cannot read it (No such file"),
        (None, ["score", "{missing}", "--backend", "constant"], "cannot read it (No such file"),
        (None, ["render", "{dir}"], "cannot read it (Is a directory)"),
        (
            [{"completion": "fine"}, '{"completion": "\\ud800 alone"}'],
            ["parse", "{src}"],
            "in.jsonl, line 2: a string holds a lone surrogate (\\ud800)",
        ),
        ([deep_row(100_000)], ["parse", "{src}"], "line 1: not valid JSON (nested too deeply)"),
        (
            ['{"completion": "x", "id": ' + "7" * 5000 + "}"],
            ["parse", "{src}"],
            "line 1: not valid JSON (an integer with more than 4300 digits)",
        ),
        (
            [PAIR],
            ["score", "{src}", "--backend", "constant", "-o", "{dir}/no/such/folder/out.jsonl"],
            "folder",
        ),
        ([PAIR], ["score", "{src}", "--backend", "constant", "-o", "{dir}"], "is a directory"),
        (
            [PAIR],
            ["score", "{src}", "--backend", "hf", "--model", "{dir}/no-such-model", "-o", "{out}"],
            "no-such-model' is a local path that does not exist",
        ),
        (
            [PAIR],
            ["score", "{src}", "--backend", "vllm", "--model", "./no-such-model", "-o", "{out}"],
            "'./no-such-model' is a local path that does not exist",
        ),
        (  # any other file-system error of any command is one line too
            [PAIR],
            ["recipe", "prepare", PREFERENCES, "-o", "{src}/data", "--max-prompt-tokens", "0"],
            "in.jsonl/data: Not a directory",
        ),
        (  # every row renders before anything is judged or written, even with --batch-size 1
            [PAIR, SYSTEM_PAIR],
            ["score", "{src}", "--backend", "constant", "--batch-size", "1", "-o", "{out}"],
            "in.jsonl, line 2: field 'context': context turn 0 has role 'system'",
        ),
    ],
)
def test_user_errors_are_one_line_and_exit_2(tmp_path, rows, argv, message):
    src = write_jsonl(tmp_path / "in.jsonl", rows) if rows else None
    names = {"missing": tmp_path / "missing.jsonl", "dir": tmp_path, "src": src}
    names["out"] = tmp_path / "out.jsonl"
    done = rmr1(*(arg.format(**names) for arg in argv))
    assert_one_error(done, 2, message)
    assert not names["out"].exists()  # no empty output file left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == (["in.jsonl"] if rows else [])


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_is_one_error_line(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [PAIR])
    done = rmr1("score", src, "--backend", "constant", "-o", "/dev/full")
    assert_one_error(done, 2, "/dev/full: cannot write (No space left on device)")
    with open("/dev/full", "w") as full:  # stdout on a full disk
        done = rmr1("render", src, stdout=full)
    assert_one_error(done, 2, "<stdout>: cannot write (No space left on device)")


def test_model_paths_and_hub_ids():
    from rmr1_plugins.backends.base import missing_local_model

    for path in ("/no/such/dir", "./nope", "../nope", "~/no-such-model-here"):
        assert "is a local path that does not exist" in missing_local_model(path)
    for name in ("models/judge/v1", "org/my model", "C:\\models\\judge"):
        assert "nor a hub id" in missing_local_model(name)
    for name in ("gaotang/RM-R1-Qwen2.5-Instruct-7B", "gpt2", ".", str(Path(__file__).parent)):
        assert missing_local_model(name) is None  # hub ids stay hub ids; folders that exist


# -- a failing run keeps what it wrote and never destroys an existing -o file --------------

BOOM = {**PAIR, "id": "boom", "response_a": "boom"}  # the `votes` judge raises on it


def test_judge_failure_mid_run_is_one_line_and_keeps_the_old_file(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [PAIR, BOOM])
    out = tmp_path / "out.jsonl"
    out.write_text("precious\n")
    argv = ["score", src, "--backend", "votes", "--batch-size", "1", "-o", out]
    done = rmr1(*argv, script=SERVING)
    assert_one_error(done, 1, "the judge failed: injected failure")
    assert out.read_text() == "precious\n"
    [row] = lines((tmp_path / "out.jsonl.partial").read_text())  # the row judged before
    assert row["id"] == "p1"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "in.jsonl",
        "out.jsonl",
        "out.jsonl.partial",
    ]


def test_judge_failure_into_a_new_file_keeps_the_rows_written(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [PAIR, BOOM])
    out = tmp_path / "new.jsonl"
    done = rmr1("score", src, "--backend", "votes", "--batch-size", "1", "-o", out, script=SERVING)
    assert_one_error(done, 1, "the judge failed")
    assert [r["id"] for r in lines(out.read_text())] == ["p1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "new.jsonl"]


def test_failure_before_any_row_leaves_the_file_alone_and_success_replaces_it(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [BOOM])
    out = tmp_path / "out.jsonl"
    out.write_text("precious\n")
    out.chmod(0o640)
    done = rmr1("score", src, "--backend", "votes", "-o", out, script=SERVING)
    assert_one_error(done, 1, "the judge failed")
    assert out.read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]

    assert (
        main(
            [
                "score",
                write_jsonl(tmp_path / "in.jsonl", [PAIR]),
                "-o",
                str(out),
                "--backend",
                "constant",
            ]
        )
        == 0
    )
    assert [r["id"] for r in lines(out.read_text())] == ["p1"]
    assert out.stat().st_mode & 0o777 == 0o640  # the replaced file keeps its permissions
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


# -- first contact (issue 10, item 7) ------------------------------------------------------


class SubBatchJudge(Backend):
    """Works in sub-batches of ``batch_size`` like ``hf``; records each call's size."""

    name = "sub-batch"

    class Options(BackendOptions):
        batch_size: int = 2

    calls: ClassVar[list[int]] = []

    def generate(self, conversations, params):
        SubBatchJudge.calls.append(len(conversations))
        return [[Generation("<answer>[[A]]</answer>", "stop")] for _ in conversations]


@pytest.fixture
def sub_batch_judge():
    SubBatchJudge.calls = []
    with backends_registered({"sub-batch": SubBatchJudge}):
        yield SubBatchJudge


def test_progress_bar_has_a_label_and_moves_after_every_backend_call(
    tmp_path, monkeypatch, sub_batch_judge
):
    import tqdm

    seen = []
    update = tqdm.tqdm.update

    def record(bar, n=1):
        moved = update(bar, n)
        seen.append((bar.desc, SubBatchJudge.calls.copy(), bar.n))
        return moved

    monkeypatch.setattr(tqdm.tqdm, "update", record)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # the bar shows on terminals only
    pairs = [{**PAIR, "id": str(i), "response_a": "x" * i} for i in range(5)]
    src = write_jsonl(tmp_path / "in.jsonl", pairs)
    argv = ["score", src, "-o", str(tmp_path / "out.jsonl"), "--backend", "sub-batch"]
    assert main(argv) == 0
    assert SubBatchJudge.calls == [2, 2, 1]  # one backend call per sub-batch of the 64
    positions = [(calls, n) for desc, calls, n in seen if calls]
    assert positions[:3] == [([2], 2), ([2, 2], 4), ([2, 2, 1], 5)]
    assert {desc for desc, _, _ in seen} == {"judging"}
    assert len(lines((tmp_path / "out.jsonl").read_text())) == 5


def test_orders_agree_is_none_when_neither_order_gave_a_verdict(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [PAIR])
    out = tmp_path / "out.jsonl"
    argv = ["score", src, "-o", str(out), "--backend", "constant", "--order", "both"]
    assert main([*argv, "--backend-option", "completion=no verdict here"]) == 0
    [row] = lines(out.read_text())
    assert row["votes"] == {"A": 0, "B": 0, "none": 2} and row["orders_agree"] is None


def test_orders_agree_values():
    from rmr1_plugins.schema import Judgment
    from rmr1_plugins.scorer import combine
    from rmr1_plugins.testing import pair

    def result(given, swapped):
        judgments = [
            Judgment(verdict=given, completion=""),
            Judgment(verdict=swapped, completion="", swapped=True),
        ]
        return combine(pair(), judgments).orders_agree

    assert result("A", "A") is True
    assert result("A", "B") is False
    assert result("A", None) is False and result(None, "B") is False
    assert result(None, None) is None
    assert combine(pair(), [Judgment(verdict=None, completion="")]).orders_agree is None


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (
            ["score"],
            [
                "pairs per scorer call (default: 64)",
                "(default: rmr1-instruct)",
                "(default: hf)",
                "(default: 4096)",
                "(default: given",
                "(default: -)",
            ],
        ),
        (["render"], ["(default: rmr1-instruct)"]),
        (["parse"], ["(default: strict)"]),
        (["eval"], ["comparisons per backend call (default: 64)"]),
        (["recipe", "run"], ["(default: rmr1)"]),
    ],
)
def test_help_shows_defaults(argv, shown, capsys):
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for item in shown:
        assert item in text


def test_smollm2_conversion_says_so_before_starting(tmp_path, monkeypatch, capsys):
    from rmr1_plugins import testing

    class Stop(Exception):
        pass

    class Loader:
        @staticmethod
        def from_pretrained(*args, **kwargs):
            raise Stop  # the slow conversion would start here

    fake = type("transformers", (), {"AutoTokenizer": Loader, "AutoModelForCausalLM": Loader})
    monkeypatch.setattr(testing, "require", lambda *args: fake)
    monkeypatch.setattr(testing, "smollm2_gguf", lambda: (tmp_path, testing.GGUF_NAME))
    with pytest.raises(Stop):
        testing.smollm2_checkpoint(tmp_path / "smollm2")
    err = capsys.readouterr().err
    assert "converting SmolLM2-135M-Instruct" in err and "0.5 GB" in err
    assert str(tmp_path / "smollm2") in err
