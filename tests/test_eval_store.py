"""The judgments file under crashes, torn writes, concurrent runs and changed settings."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rmr1_plugins.cli import main
from rmr1_plugins.config import ConfigError
from rmr1_plugins.eval.store import (
    SERVING_OPTIONS,
    JudgmentFile,
    read_records,
    run_settings,
)
from rmr1_plugins.jsonl import InputError
from rmr1_plugins.plugins import get_backend_class
from rmr1_plugins.scorer_config import ScorerConfig

DATA = Path(__file__).parent / "data" / "eval"
JUDGEBENCH = str(DATA / "judgebench.jsonl")
# The constant judge's answer with characters of 2, 3 and 4 bytes in UTF-8.
WIDE = "<answer>[[A]]</answer> é 判断 🙂"


def eval_argv(judgments: Path, *extra: str) -> list[str]:
    out = judgments.parent / "out"
    return ["eval", "--benchmark", "judgebench", "--data", JUDGEBENCH, "--backend", "constant",
            "--judgments", str(judgments), "-o", str(out), *extra]  # fmt: skip


def judged(tmp_path: Path, *extra: str) -> tuple[Path, list[bytes]]:
    """A judgments file of all 6 JudgeBench comparisons, and its lines (with their newlines)."""
    path = tmp_path / "judgments.jsonl"
    assert main(eval_argv(path, "--batch-size", "2", *extra)) == 0
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) == 6
    return path, lines


def run_of(path: Path) -> dict:
    return json.loads(path.read_bytes().splitlines()[0])["run"]


# --- torn lines --------------------------------------------------------------------------------


def wait_for(pid: int, limit_s: float = 60.0) -> int:
    """The child's wait status; a child still running after ``limit_s`` is a hang: fail."""
    deadline = time.monotonic() + limit_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the repairing child hung for {limit_s} s")
        time.sleep(0.001)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_kill_at_any_point_of_the_repair_loses_no_complete_record(tmp_path):
    """A child process repairs a torn file and is SIGKILLed before its Nth C call, for every N.

    Whatever the moment, the file keeps every complete record: it is either as it was (torn
    line included) or cut right after the last complete line. (The old repair rewrote the file:
    killed between its truncating open and its write, it left an empty file.)
    """
    path, lines = judged(tmp_path)
    complete = b"".join(lines[:3])
    torn = complete + lines[3][:40]
    run = run_of(path)
    outcomes = set()
    for stop_at in range(1, 5000):  # the bound only guards against a hang
        path.write_bytes(torn)
        pid = os.fork()
        if pid == 0:  # the child: repair, killed at C call number ``stop_at``
            calls = 0

            def kill_at(frame, event, arg, stop_at=stop_at):
                nonlocal calls
                if event == "c_call":
                    calls += 1
                    if calls == stop_at:
                        os.kill(os.getpid(), signal.SIGKILL)

            try:
                sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - a lock of its own
                sys.setprofile(kill_at)
                JudgmentFile(path, run, "judgebench")
                sys.setprofile(None)
            finally:
                os._exit(0)
        status = wait_for(pid)
        killed = os.WIFSIGNALED(status)
        assert killed or os.waitstatus_to_exitcode(status) == 0
        after = path.read_bytes()
        assert after in (torn, complete), f"killed before C call {stop_at}: {after[:80]!r}"
        outcomes.add(after)
        if not killed:  # the repair ran to its end before the Nth call
            break
    assert not killed and after == complete and outcomes == {torn, complete}
    assert stop_at > 20  # the repair was interrupted at many points, not one


def test_a_line_cut_inside_a_multibyte_character_is_dropped_and_the_run_resumes(tmp_path, capsys):
    path, lines = judged(tmp_path, "--backend-option", f"completion={WIDE}")
    cut = lines[3].index("判".encode()) + 1  # one byte of a three-byte character
    path.write_bytes(b"".join(lines[:3]) + lines[3][:cut])
    assert len(read_records(path)) == 3  # reading alone leaves the file as it is
    assert path.read_bytes().endswith(lines[3][:cut])
    assert "line 4: skipped an unfinished line" in capsys.readouterr().err
    assert main(eval_argv(path, "--backend-option", f"completion={WIDE}")) == 0
    assert "line 4: skipped an unfinished line" in capsys.readouterr().err
    text = path.read_bytes()
    assert text.startswith(b"".join(lines[:3]))  # the complete lines are untouched
    records = [json.loads(line) for line in text.splitlines()]
    assert sorted(r["id"] for r in records) == [f"jb-{k}" for k in range(1, 7)]
    assert {r["judgments"][0]["completion"] for r in records} == {WIDE}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            b'{"id": "x", "note": "\xe5\x88"}\n',
            "line 2: not valid UTF-8 (invalid continuation byte",
        ),
        (b'{"id": "x",\n', "line 2: not valid JSON (Expecting property name"),
        (b"[1, 2]\n", "line 2: not a judgment record"),
        (b"[" * 100_000 + b"\n", "line 2: nested too deeply"),
    ],
)
def test_a_broken_line_before_the_last_is_an_error_naming_it(tmp_path, bad, message):
    path, lines = judged(tmp_path)
    path.write_bytes(lines[0] + bad + b"".join(lines[1:]))
    for read in (read_records, lambda p: JudgmentFile(p, run_of(p), "judgebench")):
        with pytest.raises(InputError, match="line 2: ") as error:
            read(path)
        assert str(error.value).startswith(f"{path}, {message}")


def test_a_complete_last_record_without_its_newline_is_kept_and_ended(tmp_path):
    path, lines = judged(tmp_path)
    path.write_bytes(b"".join(lines).rstrip(b"\n"))
    with JudgmentFile(path, run_of(path), "judgebench") as store:
        assert len(store.records) == 6
    assert path.read_bytes() == b"".join(lines)


def test_a_failed_append_leaves_the_file_as_it_was(tmp_path):
    path, lines = judged(tmp_path)
    record = json.loads(lines[0]) | {"id": "jb-new"}

    class DiskFull:  # writes a few bytes, then fails, like a file system running out of space
        def __init__(self, handle):
            self.handle = handle

        def write(self, data):
            self.handle.write(data[:10])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.handle, name)

    with JudgmentFile(path, run_of(path), "judgebench") as store:
        real = store._handle
        store._handle = DiskFull(real)
        with pytest.raises(OSError, match="No space"):
            store.append(record)
        assert path.read_bytes() == b"".join(lines)
        store._handle = real
        store.append(record)
    assert len(read_records(path)) == 7


def test_a_lone_surrogate_in_a_completion_is_stored_and_read_back(tmp_path):
    path, lines = judged(tmp_path)
    record = json.loads(lines[0])
    record["judgments"][0]["completion"] = "half a pair: \ud800"
    with JudgmentFile(path, run_of(path), "judgebench") as store:
        store.append(record)
    path.read_bytes().decode("utf-8")  # still valid UTF-8
    assert read_records(path)["jb-1"]["judgments"][0]["completion"] == "half a pair: \ud800"


# --- one run at a time -------------------------------------------------------------------------


def test_a_second_open_of_a_judgments_file_is_refused_until_the_first_closes(tmp_path):
    path, _ = judged(tmp_path)
    run = run_of(path)
    with JudgmentFile(path, run, "judgebench"):
        with pytest.raises(ConfigError, match="is in use by another rmr1 eval run") as error:
            JudgmentFile(path, run, "judgebench")
        assert str(path) in str(error.value)
    with JudgmentFile(path, run, "judgebench") as store:  # released on close
        assert len(store.records) == 6


HOLDER = """
import sys
from rmr1_plugins.eval.store import JudgmentFile, read_records
path = sys.argv[1]
run = next(iter(read_records(path).values()))["run"]
store = JudgmentFile(path, run, "judgebench")
print("holding", flush=True)
sys.stdin.read()  # until the test closes stdin (or kills this process)
"""


def test_a_second_rmr1_eval_on_a_file_in_use_exits_2_and_leaves_it_alone(tmp_path, capsys):
    """Two real processes: one holds the file as a run does, the other is ``rmr1 eval``."""
    path, lines = judged(tmp_path)
    lines = lines[:4]
    path.write_bytes(b"".join(lines))  # two comparisons left to judge
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout.readline() == b"holding\n"
        # rmr1 eval in its own process
        done = subprocess.run(
            [sys.executable, "-m", "rmr1_plugins.cli", *eval_argv(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.splitlines() == [
            f"error: {path} is in use by another rmr1 eval run (it holds the file's lock); "
            "wait for that run to end, or pass another --judgments file"
        ]
        # and in this process, through the same command line
        assert main(eval_argv(path)) == 2
        assert f"error: {path} is in use by another rmr1 eval run" in capsys.readouterr().err
        assert path.read_bytes() == b"".join(lines)
    finally:
        holder.kill()  # SIGKILL: the kernel drops the lock with the process
        holder.wait(timeout=30)
    assert main(eval_argv(path)) == 0
    assert len(read_records(path)) == 6


def test_a_running_rmr1_eval_holds_the_lock_while_it_judges(tmp_path, monkeypatch):
    """A second ``rmr1 eval`` process started while this one judges is refused."""
    import rmr1_plugins.eval.cli as eval_cli

    path = tmp_path / "judgments.jsonl"
    seen = []

    def judge_and_race(*args, **kwargs):
        second = subprocess.run(
            [sys.executable, "-m", "rmr1_plugins.cli", *eval_argv(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        seen.append((second.returncode, second.stderr))
        return judge(*args, **kwargs)

    judge = eval_cli.judge
    monkeypatch.setattr(eval_cli, "judge", judge_and_race)
    assert main(eval_argv(path)) == 0
    [(code, err)] = seen
    assert code == 2 and err.startswith(f"error: {path} is in use by another rmr1 eval run")
    assert len(read_records(path)) == 6  # the first run's records alone, once each
    assert len(path.read_bytes().splitlines()) == 6


# --- the run's settings ------------------------------------------------------------------------


def config(backend="constant", **options) -> ScorerConfig:
    return ScorerConfig(backend={"name": backend, "model": "m", "options": options})


def test_every_scorer_setting_is_recorded_or_listed_as_not_changing_a_judgment():
    run = run_settings(ScorerConfig(backend={"name": "constant"}))
    not_recorded = {"cache_size", "cache_sampled"}  # only whether a request is answered again
    recorded = run.keys() - {"backend", "model", "backend_options"}  # BackendConfig's fields
    assert ScorerConfig.model_fields.keys() - {"backend"} == recorded | not_recorded
    assert run["neutralize_markup"] is False and run["backend_options"] == {}


# Each backend's options that can change a judgment. A new option must be placed here or in
# SERVING_OPTIONS (docs/guides/eval.md says why each is where it is).
JUDGING_OPTIONS = {
    "openai": {"stop_at_answer", "extra_body", "reasoning_model"},
    "vllm": {
        "add_special_tokens",
        "dtype",
        "max_model_len",
        "seed",
        "trust_remote_code",
        "chat_template_kwargs",
        "stop_at_answer",
        "overflow",
        "engine_kwargs",
    },
    "hf": {"dtype", "gguf_file", "trust_remote_code"},
    "constant": {"completion"},
}


@pytest.mark.parametrize("backend", JUDGING_OPTIONS)
def test_each_backend_option_is_either_judging_or_serving(backend):
    fields = get_backend_class(backend).Options.model_fields.keys()
    serving = SERVING_OPTIONS.get(backend, set())
    assert not serving & JUDGING_OPTIONS[backend]
    assert fields == serving | JUDGING_OPTIONS[backend]


@pytest.mark.parametrize(
    ("backend", "serving", "judging"),
    [
        (
            "openai",
            {"base_url": ["http://10.0.0.1/v1", "http://10.0.0.2/v1"], "timeout_s": 5,
             "max_concurrency": 8, "max_retries": 0, "headers": {"X-Trace": "1"}},
            {"stop_at_answer": False, "extra_body": {"chat_template_kwargs": {"x": 1}}},
        ),
        (
            "vllm",
            {"tensor_parallel_size": 2, "gpu_memory_utilization": 0.5, "enforce_eager": True},
            {"max_model_len": 4096, "overflow": "truncate", "dtype": "float16"},
        ),
        ("hf", {"device": "cpu", "batch_size": 2}, {"dtype": "float32"}),
    ],
)  # fmt: skip
def test_serving_options_are_left_out_and_judging_options_recorded(backend, serving, judging):
    plain = run_settings(config(backend))
    assert run_settings(config(backend, **serving)) == plain
    changed = run_settings(config(backend, **serving, **judging))
    assert changed == plain | {"backend_options": judging}


def test_an_option_given_at_its_default_counts_as_not_given():
    assert run_settings(config("openai", stop_at_answer=True)) == run_settings(config("openai"))
    assert run_settings(config("vllm", seed=0, dtype="auto")) == run_settings(config("vllm"))


def test_an_invalid_backend_option_is_refused_before_anything_runs():
    with pytest.raises(ConfigError, match=r"backend\.options\.tmeout: unknown key"):
        run_settings(config("openai", tmeout=5))


def test_a_changed_backend_option_is_refused_naming_it_with_both_values(tmp_path, capsys):
    path, _ = judged(tmp_path, "--backend-option", "completion=<answer>[[A]]</answer>")
    assert main(eval_argv(path, "--backend-option", "completion=<answer>[[B]]</answer>")) == 2
    err = capsys.readouterr().err
    assert (
        f"error: {path} holds judgments made with "
        "backend_options={'completion': '<answer>[[A]]</answer>'}, "
        "not {'completion': '<answer>[[B]]</answer>'}; pass the same settings"
    ) in err


def test_a_changed_guard_is_refused_and_every_differing_key_is_named(tmp_path, capsys):
    path, lines = judged(tmp_path)
    assert main(eval_argv(path, "--neutralize-markup")) == 2
    assert "made with neutralize_markup=False, not True; pass" in capsys.readouterr().err
    assert main(eval_argv(path, "--neutralize-markup", "--seed", "3", "--top-p", "0.5")) == 2
    err = capsys.readouterr().err
    assert (
        "made with neutralize_markup=False, not True; seed=0, not 3; "
        "sampling={'top_p': 1.0}, not {'top_p': 0.5}; pass"
    ) in err
    assert path.read_bytes() == b"".join(lines)  # a refused run writes nothing


def test_a_file_from_before_the_new_keys_resumes_with_their_defaults_only(tmp_path, capsys):
    path, lines = judged(tmp_path)
    old = []
    for line in lines:  # as an older version wrote them
        record = json.loads(line)
        del record["run"]["neutralize_markup"], record["run"]["backend_options"]
        old.append(json.dumps(record, ensure_ascii=False) + "\n")
    path.write_text("".join(old[:5]), encoding="utf-8")
    assert main(eval_argv(path)) == 0
    err = capsys.readouterr().err
    assert "does not record backend_options={}, neutralize_markup=False; taken as defaults" in err
    assert len(read_records(path)) == 6  # only the missing comparison was judged
    path.write_text("".join(old[:5]), encoding="utf-8")
    assert main(eval_argv(path, "--neutralize-markup")) == 2
    assert "made with neutralize_markup=False, not True" in capsys.readouterr().err
    assert main(eval_argv(path, "--backend-option", "completion=x")) == 2
    assert "made with backend_options={}, not {'completion': 'x'}" in capsys.readouterr().err


def test_a_judgments_path_that_is_a_folder_is_one_error_line(tmp_path, capsys):
    folder = tmp_path / "judgments.jsonl"
    folder.mkdir()
    assert main(eval_argv(folder)) == 2
    err = capsys.readouterr().err
    assert f"error: {folder}: cannot open judgments" in err and "Traceback" not in err
