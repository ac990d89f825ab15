"""``rmr1 recipe distill``: the two passes, RM-R1's correctness rule, SFT rows, resuming."""

from __future__ import annotations

import json

import pytest

from rmr1_plugins.backends.base import Backend, Generation, SamplingParams
from rmr1_plugins.cli import main
from rmr1_plugins.recipe.distill import (
    PREVIOUS_PREFIX,
    distill,
    is_correct,
    second_pass_messages,
)
from rmr1_plugins.recipe.sources import read_jsonl
from rmr1_plugins.templates import second_pass_suffixes


class Teacher(Backend):
    """Answers [[A]] on pass 1, and on pass 2 whatever the suffix says is correct."""

    name = "teacher"

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__("teacher-model")
        self.seen: list[str] = []
        self.fail_after = fail_after

    def generate(self, conversations, params):
        if self.fail_after is not None and len(self.seen) >= self.fail_after:
            raise KeyboardInterrupt  # an interrupted run
        out = []
        for conversation in conversations:
            user = conversation[-1]["content"]
            self.seen.append(user)
            verdict = "B" if "the correct verdict is [[B]]" in user else "A"
            out.append(
                [Generation(f"<eval>thinking</eval>\n<answer>[[{verdict}]]</answer>", "stop")]
            )
        return out


def rows(n: int) -> list[dict]:
    return [
        {
            "id": f"r{i}",
            "context_messages": [
                {"role": "system", "content": "judge"},
                {"role": "user", "content": f"pair {i}"},
            ],
            "winner": "model_a" if i % 2 == 0 else "model_b",
        }
        for i in range(n)
    ]


def write_rows(path, items):
    path.write_text("".join(json.dumps(r) + "\n" for r in items))
    return path


def test_correct_means_the_label_in_the_last_100_characters():
    assert is_correct("... <answer>[[A]]</answer>", "model_a")
    assert not is_correct("... <answer>[[A]]</answer>", "model_b")
    assert not is_correct("[[A]]" + "x" * 100, "A")
    assert is_correct("[[B]]" + "x" * 95, "B")


def test_second_pass_extends_the_user_message_like_rm_r1():
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    out = second_pass_messages(messages, "model_b", "<answer>[[A]]</answer>")
    assert out[0] == messages[0]
    assert out[1]["content"] == (
        "u" + second_pass_suffixes()["B"] + PREVIOUS_PREFIX + "<answer>[[A]]</answer>"
    )
    assert messages[1]["content"] == "u"  # the input is not modified


def test_two_passes_keep_only_correct_traces_with_the_original_prompt(tmp_path):
    path = write_rows(tmp_path / "distill.jsonl", rows(4))
    teacher = Teacher()
    stats = distill(path, tmp_path / "out", teacher, SamplingParams(max_new_tokens=8))
    assert (stats.first_pass_correct, stats.second_pass_tried, stats.second_pass_correct) == (
        2,
        2,
        2,
    )
    assert len(teacher.seen) == 6
    assert teacher.seen[4].startswith("pair 1" + second_pass_suffixes()["B"] + PREVIOUS_PREFIX)
    sft = read_jsonl(tmp_path / "out" / "sft.jsonl")
    assert [r["id"] for r in sft] == ["r0", "r1", "r2", "r3"]
    assert sft[1]["prompt"] == rows(4)[1]["context_messages"]  # not the pass-2 prompt
    assert sft[1]["completion"] == [
        {"role": "assistant", "content": "<eval>thinking</eval>\n<answer>[[B]]</answer>"}
    ]


def test_no_second_pass_drops_wrong_traces(tmp_path):
    path = write_rows(tmp_path / "distill.jsonl", rows(4))
    stats = distill(path, tmp_path / "out", Teacher(), SamplingParams(), second_pass=False)
    assert (stats.sft_rows, stats.second_pass_tried) == (2, 0)


def test_interrupted_run_resumes_without_regenerating(tmp_path):
    path = write_rows(tmp_path / "distill.jsonl", rows(6))
    with pytest.raises(KeyboardInterrupt):
        distill(path, tmp_path / "out", Teacher(fail_after=2), SamplingParams(), batch_size=2)
    assert len((tmp_path / "out" / "traces.jsonl").read_text().splitlines()) == 2
    with open(tmp_path / "out" / "traces.jsonl", "a") as handle:
        handle.write('{"id": "r2", "pa')  # a line torn by the kill
    teacher = Teacher()
    stats = distill(path, tmp_path / "out", teacher, SamplingParams(), batch_size=2)
    assert stats.resumed == 2
    assert teacher.seen[:4] == ["pair 2", "pair 3", "pair 4", "pair 5"]
    assert len(teacher.seen) == 4 + 3  # and pass 2 for r1, r3, r5
    assert stats.sft_rows == 6
    records = [json.loads(line) for line in (tmp_path / "out" / "traces.jsonl").open()]
    assert len(records) == 2 + 4 + 3  # the torn line is gone, every record is whole


def test_bad_label_is_an_input_error(tmp_path):
    path = write_rows(tmp_path / "distill.jsonl", [{**rows(1)[0], "winner": "tie"}])
    assert main(["recipe", "distill", str(path), "-o", str(tmp_path), "--backend", "constant"]) == 2


def test_cli_distill_with_a_constant_teacher(tmp_path, capsys):
    path = write_rows(tmp_path / "distill.jsonl", rows(2))
    argv = ["recipe", "distill", str(path), "-o", str(tmp_path / "out"), "--backend", "constant"]
    assert main(argv) == 0  # the constant answer [[A]] is right for r0; pass 2 repeats it
    assert json.loads((tmp_path / "out" / "distill_stats.json").read_text())["sft_rows"] == 1
    option = "completion=no verdict"
    assert main([*argv, "--backend-option", option, "-o", str(tmp_path / "none")]) == 1
    assert "no trace had the right verdict" in capsys.readouterr().err


def test_cli_teacher_from_a_yaml_config_with_flag_overrides(tmp_path):
    path = write_rows(tmp_path / "distill.jsonl", rows(2))
    config = tmp_path / "teacher.yaml"
    config.write_text(
        "backend: {name: constant, options: {completion: '<answer>[[B]]</answer>'}}\n"
        "sampling: {max_new_tokens: 8}\n"
    )
    argv = ["recipe", "distill", str(path), "--config", str(config), "--max-new-tokens", "4"]
    assert main([*argv, "-o", str(tmp_path / "b")]) == 0
    assert [r["id"] for r in read_jsonl(tmp_path / "b" / "sft.jsonl")] == ["r1"]
    flipped = [*argv, "--backend-option", "completion=<answer>[[A]]</answer>"]
    assert main([*flipped, "-o", str(tmp_path / "a")]) == 0
    assert [r["id"] for r in read_jsonl(tmp_path / "a" / "sft.jsonl")] == ["r0"]
    assert main([*argv, "--max-new-tokens", "0", "-o", str(tmp_path / "bad")]) == 2


class Recording(Backend):
    """Answers one fixed verdict and records the sampling it was asked with."""

    name = "recording"

    def __init__(self, verdict: str) -> None:
        super().__init__("recording-model")
        self.verdict, self.calls = verdict, []

    def generate(self, conversations, params):
        self.calls.append((len(conversations), params))
        return [[Generation(f"<answer>[[{self.verdict}]]</answer>", "stop")] for _ in conversations]


def test_a_correction_teacher_does_pass_2_with_its_own_sampling(tmp_path):
    path = write_rows(tmp_path / "distill.jsonl", rows(4))
    first, second = Recording("A"), Recording("B")  # pass 1 is wrong on r1 and r3
    stats = distill(
        path,
        tmp_path / "out",
        first,
        SamplingParams(max_new_tokens=8192, temperature=1.0),
        correction=(second, SamplingParams(max_new_tokens=100, temperature=0.5)),
    )
    assert [(n, p.max_new_tokens, p.temperature) for n, p in first.calls] == [(4, 8192, 1.0)]
    assert [(n, p.max_new_tokens, p.temperature) for n, p in second.calls] == [(2, 100, 0.5)]
    assert (stats.first_pass_correct, stats.second_pass_correct, stats.sft_rows) == (2, 2, 4)
    traces = read_jsonl(tmp_path / "out" / "traces.jsonl")
    assert {t["id"]: t["completion"] for t in traces if t["pass"] == 2} == {
        "r1": "<answer>[[B]]</answer>",
        "r3": "<answer>[[B]]</answer>",
    }


def test_cli_correction_teacher_flags_and_rm_r1_teacher_defaults(tmp_path, monkeypatch):
    import rmr1_plugins.recipe.distill as module

    seen = {}
    real = module.distill

    def spy(rows_path, out_dir, teacher, sampling, **kwargs):
        seen["first"] = (teacher.opts.completion, sampling)
        correction = kwargs.get("correction")
        seen["second"] = (correction[0].opts.completion, correction[1]) if correction else None
        return real(rows_path, out_dir, teacher, sampling, **kwargs)

    monkeypatch.setattr(module, "distill", spy)
    path = write_rows(tmp_path / "distill.jsonl", rows(2))
    argv = ["recipe", "distill", str(path), "--backend", "constant"]
    assert main([*argv, "-o", str(tmp_path / "one")]) == 0
    completion, sampling = seen["first"]
    assert (sampling.max_new_tokens, sampling.temperature) == (8192, 1.0)  # RM-R1's teacher
    assert seen["second"] is None  # one teacher does both passes
    fix = "completion=<answer>[[B]]</answer>"
    correction = ["--correction-teacher-backend-option", fix]
    correction += ["--correction-teacher-max-new-tokens", "64"]
    assert main([*argv, *correction, "-o", str(tmp_path / "two")]) == 0
    completion, sampling = seen["second"]
    assert completion == "<answer>[[B]]</answer>"  # backend inherited, option its own
    assert (sampling.max_new_tokens, sampling.temperature) == (64, 1.0)
    assert [r["id"] for r in read_jsonl(tmp_path / "two" / "sft.jsonl")] == ["r0", "r1"]
    assert [r["id"] for r in read_jsonl(tmp_path / "one" / "sft.jsonl")] == ["r0"]
