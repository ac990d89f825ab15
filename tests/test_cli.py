import json
import shutil
import subprocess
import sys

import pytest

from rmr1_plugins.cli import main

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
    assert main(["parse", "--rule", "rmr1-train", path]) == 0
    assert lines(capsys.readouterr().out) == [
        {"id": 1, "verdict": "B", "reward": 1.0},
        {"verdict": None, "reward": -1.0},
    ]
    assert main(["parse", "--rule", "rmr1-eval", path]) == 0
    assert lines(capsys.readouterr().out) == [{"id": 1, "verdict": "B"}, {"verdict": None}]


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
            ["parse", "--rule", "rmr1-train"],
            "line 1: field 'label': required",
        ),
        ([{"completion": 3}], ["parse"], "line 1: field 'completion': must be a string"),
        (
            [{"completion": "x", "label": "tie"}],
            ["parse", "--rule", "rmr1-train"],
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
    assert [r["id"] for r in results] == ["p1", None]
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
    assert done.returncode == 0 and json.loads(done.stdout) == {"verdict": "B"}
