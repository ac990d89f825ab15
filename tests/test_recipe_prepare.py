"""``rmr1 recipe prepare``: every source format, A/B placement, splitting, bad rows."""

from __future__ import annotations

import json

import pytest

from rmr1_plugins.cli import main, read_pairs
from rmr1_plugins.jsonl import InputError
from rmr1_plugins.recipe.prepare import PrepareConfig, PrepareStats, prepare, read_preferences
from rmr1_plugins.recipe.sources import read_jsonl
from rmr1_plugins.templates import template_text

SKYWORK = {
    "chosen": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello!"}],
    "rejected": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Go away."}],
    "source": "helpsteer2",
}
CODE = {"input": "Reverse a list.", "accepted": "xs[::-1]", "rejected": "xs.sort()"}
MATH = {
    "prompt": "1+2*3?",
    "initial_reason_steps": "Step 1: 2*3=6.\n",
    "full_chosen": "Step 2: 1+6=7.",
    "full_rejected": "Step 2: 1+6=8.",
}
TRL = {"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Berlin"}
TRL_CONVERSATIONAL = {
    "prompt": [{"role": "user", "content": "2+2?"}],
    "chosen": [{"role": "assistant", "content": "4"}],
    "rejected": [{"role": "assistant", "content": "5"}],
}
MULTI_TURN = {
    "chosen": [
        {"role": "user", "content": "Name a fruit."},
        {"role": "assistant", "content": "Apple."},
        {"role": "user", "content": "Another?"},
        {"role": "assistant", "content": "Banana."},
    ],
    "rejected": [
        {"role": "user", "content": "Name a fruit."},
        {"role": "assistant", "content": "Apple."},
        {"role": "user", "content": "Another?"},
        {"role": "assistant", "content": "Carrot."},
    ],
}


PREPARE = ["recipe", "prepare", "--max-prompt-tokens", "0"]  # no tokenizer needed


def write(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def test_each_source_format_becomes_the_right_pair(tmp_path):
    source = write(tmp_path / "mix.jsonl", [SKYWORK, CODE, MATH, TRL, TRL_CONVERSATIONAL])
    prefs = read_preferences([source], PrepareConfig(max_prompt_tokens=None), PrepareStats())
    got = [(p.context[-1].content, p.chosen, p.rejected) for p in prefs]
    assert got == [
        ("Hi?", "Hello!", "Go away."),
        ("Reverse a list.", "xs[::-1]", "xs.sort()"),
        ("1+2*3?", "Step 1: 2*3=6.\nStep 2: 1+6=7.", "Step 1: 2*3=6.\nStep 2: 1+6=8."),
        ("Capital of France?", "Paris", "Berlin"),
        ("2+2?", "4", "5"),
    ]
    assert [p.id for p in prefs] == [f"mix-{n}" for n in range(1, 6)]


def test_rows_are_rendered_by_the_template_with_alternating_winners(tmp_path):
    source = write(tmp_path / "code.jsonl", [CODE] * 6)
    stats = prepare(
        [source],
        tmp_path / "out",
        PrepareConfig(max_prompt_tokens=None, distill_fraction=0.5, seed=1),
    )
    rows = read_jsonl(tmp_path / "out" / "distill.jsonl") + read_jsonl(
        tmp_path / "out" / "rl.jsonl"
    )
    assert stats.parts == {"eval": 0, "distill": 3, "rl": 3}
    assert stats.winners == {"model_a": 3, "model_b": 3}
    for row in rows:
        system, user = row["context_messages"]
        assert system == {"role": "system", "content": template_text("INSTRUCT_SYSTEM_PROMPT.txt")}
        chosen_first = user["content"].index("xs[::-1]") < user["content"].index("xs.sort()")
        assert row["winner"] == ("model_a" if chosen_first else "model_b")


def test_both_orders_keeps_each_pair_twice_in_the_same_part(tmp_path):
    source = write(tmp_path / "code.jsonl", [{**CODE, "id": i} for i in range(4)])
    config = PrepareConfig(max_prompt_tokens=None, placement="both", distill_fraction=0.5)
    stats = prepare([source], tmp_path / "out", config)
    assert stats.pairs == 4
    assert stats.parts == {"eval": 0, "distill": 4, "rl": 4}
    for part in ("distill", "rl"):
        ids = [row["id"] for row in read_jsonl(tmp_path / "out" / f"{part}.jsonl")]
        assert sorted({i[:-2] for i in ids}) == sorted(i[:-2] for i in ids[::2])
        assert sorted(row[-2:] for row in ids) == [":a", ":a", ":b", ":b"]


def test_multi_turn_pairs_use_the_multi_turn_template(tmp_path):
    source = write(tmp_path / "multi.jsonl", [MULTI_TURN])
    prepare([source], tmp_path / "out", PrepareConfig(max_prompt_tokens=None, distill_fraction=0))
    (row,) = read_jsonl(tmp_path / "out" / "rl.jsonl")
    user = row["context_messages"][1]["content"]
    assert "User: Another?\nChatbot A: Banana." in user
    assert "Chatbot B: Apple.\nUser: Another?\nChatbot B: Carrot." in user


def test_eval_split_is_native_pairs_that_rmr1_score_reads(tmp_path):
    source = write(tmp_path / "trl.jsonl", [TRL] * 5)
    stats = prepare(
        [source],
        tmp_path / "out",
        PrepareConfig(max_prompt_tokens=None, eval_size=2, distill_fraction=0),
    )
    assert stats.parts == {"eval": 2, "distill": 0, "rl": 3}
    pairs = read_pairs(str(tmp_path / "out" / "eval.jsonl"))
    assert [p.label for p in pairs] == ["A" if p.response_a == "Paris" else "B" for p in pairs]
    stats_file = json.loads((tmp_path / "out" / "prepare_stats.json").read_text())
    assert stats_file["parts"] == stats.parts


def test_exclude_and_limit(tmp_path):
    magpie = {**SKYWORK, "source": "magpie_ultra"}
    source = write(tmp_path / "sky.jsonl", [magpie, SKYWORK, SKYWORK, SKYWORK])
    config = PrepareConfig(max_prompt_tokens=None, exclude={"source": "magpie_ultra"}, limit=2)
    stats = PrepareStats()
    assert len(read_preferences([source], config, stats)) == 2
    assert stats.excluded == 1


def test_bad_row_names_the_line_and_field(tmp_path):
    bad = {"chosen": SKYWORK["chosen"], "rejected": [{"role": "user", "content": "Other?"}]}
    source = write(tmp_path / "bad.jsonl", [SKYWORK, bad])
    with pytest.raises(InputError, match=r"bad.jsonl, line 2: field 'rejected'"):
        prepare([source], tmp_path / "out", PrepareConfig(max_prompt_tokens=None))


def test_system_turns_and_unknown_rows_are_counted_with_skip_invalid(tmp_path):
    system = {
        "chosen": [{"role": "system", "content": "Be brief."}, *SKYWORK["chosen"]],
        "rejected": [{"role": "system", "content": "Be brief."}, *SKYWORK["rejected"]],
    }
    source = write(tmp_path / "mixed.jsonl", [system, {"question": "?"}, CODE])
    with pytest.raises(InputError, match=r"line 1: field 'context': .*role 'system'"):
        prepare([source], tmp_path / "out", PrepareConfig(max_prompt_tokens=None))
    stats = prepare(
        [source], tmp_path / "out", PrepareConfig(max_prompt_tokens=None, skip_invalid=True)
    )
    assert (stats.invalid, stats.pairs) == (2, 1)


def test_json_list_source(tmp_path):
    (tmp_path / "rows.json").write_text(json.dumps([CODE, MATH]))
    stats = prepare(
        [str(tmp_path / "rows.json")], tmp_path / "out", PrepareConfig(max_prompt_tokens=None)
    )
    assert stats.pairs == 2


def test_cli_prepare_writes_parts_and_reports(tmp_path, capsys):
    source = write(tmp_path / "code.jsonl", [CODE] * 10)
    code = main([*PREPARE, source, "-o", str(tmp_path / "out"), "--eval-size", "2"])
    assert code == 0
    assert '"parts"' in capsys.readouterr().err
    assert len(read_jsonl(tmp_path / "out" / "rl.jsonl")) == 7


def test_cli_prepare_bad_input_exits_2(tmp_path, capsys):
    source = write(tmp_path / "bad.jsonl", [{"question": "?"}])
    assert main([*PREPARE, source, "-o", str(tmp_path / "out")]) == 2
    assert "bad.jsonl, line 1: unknown row format" in capsys.readouterr().err


def test_missing_file_and_unknown_type_are_clear_errors(tmp_path, capsys):
    out = str(tmp_path / "out")
    assert main([*PREPARE, str(tmp_path / "nope.jsonl"), "-o", out]) == 2
    assert "nope.jsonl: no such file" in capsys.readouterr().err
    (tmp_path / "rows.csv").write_text("a,b\n")
    assert main([*PREPARE, str(tmp_path / "rows.csv"), "-o", out]) == 2
    assert "unknown file type '.csv'" in capsys.readouterr().err


# RM-R1's mix_data.py keeps Skywork rows whose chosen and rejected histories differ before the
# last turn ("single" only when both are one user and one assistant turn; otherwise each side's
# whole conversation is serialised on its own with convert_sky_data_multi).
DIFFERING = {
    "chosen": [
        {"role": "user", "content": "Name a fruit."},
        {"role": "assistant", "content": "Apple."},
        {"role": "user", "content": "Another?"},
        {"role": "assistant", "content": "Banana."},
    ],
    "rejected": [
        {"role": "user", "content": "Name a fruit."},
        {"role": "assistant", "content": "Carrot."},
        {"role": "user", "content": "That is a vegetable. Another?"},
        {"role": "assistant", "content": "Potato."},
    ],
    "source": "helpsteer2",
}


def convert_sky_data_multi(messages, assistant_name):
    """mix_data.py's serialisation of one side (written out here as the oracle)."""
    roles = {"user": "User", "assistant": assistant_name}
    return "\n".join(f"{roles[m['role']]}: {m['content']}" for m in messages)


@pytest.mark.parametrize("template", ["rmr1-instruct", "rmr1-reasoning"])
def test_differing_histories_are_rendered_as_mix_data_does_and_counted(tmp_path, template):
    source = write(tmp_path / "sky.jsonl", [DIFFERING, DIFFERING, SKYWORK])
    config = PrepareConfig(max_prompt_tokens=None, distill_fraction=0.0, template=template)
    stats = prepare([str(source)], tmp_path / "out", config)
    assert (stats.differing_histories, stats.pairs, stats.invalid) == (2, 3, 0)
    assert (
        json.loads((tmp_path / "out" / "prepare_stats.json").read_text())["differing_histories"]
        == 2
    )
    rows = {row["id"]: row for row in read_jsonl(tmp_path / "out" / "rl.jsonl")}
    family = "INSTRUCT_MULTI_USER_PROMPT_TEMPLATE.txt"
    if template == "rmr1-reasoning":
        family = "REASONING_MULTI_PROMPT_TEMPLATE.txt"
    for index, (first, second, winner) in enumerate(
        [("chosen", "rejected", "model_a"), ("rejected", "chosen", "model_b")]
    ):  # the alternation: row 0 chosen in A, row 1 chosen in B
        row = rows[f"sky-{index + 1}"]
        expected = template_text(family).format(
            conversation_1=convert_sky_data_multi(DIFFERING[first], "Chatbot A"),
            conversation_2=convert_sky_data_multi(DIFFERING[second], "Chatbot B"),
        )
        assert row["winner"] == winner
        assert row["context_messages"][-1] == {"role": "user", "content": expected}
        assert len(row["context_messages"]) == (2 if template == "rmr1-instruct" else 1)


def test_differing_histories_never_go_to_the_native_eval_pairs(tmp_path):
    source = write(tmp_path / "sky.jsonl", [DIFFERING] * 3 + [SKYWORK] * 2)
    config = PrepareConfig(max_prompt_tokens=None, distill_fraction=0.0, eval_size=5)
    stats = prepare([str(source)], tmp_path / "out", config)
    assert stats.parts == {"eval": 2, "distill": 0, "rl": 3}
    assert all(
        r["response_a"] in {"Hello!", "Go away."}
        for r in read_jsonl(tmp_path / "out" / "eval.jsonl")
    )


def test_a_single_turn_row_asking_two_questions_is_refused_as_rm_r1_asserts(tmp_path):
    bad = {**SKYWORK, "rejected": [{"role": "user", "content": "Bye?"}, SKYWORK["rejected"][1]]}
    source = write(tmp_path / "sky.jsonl", [bad])
    with pytest.raises(InputError, match="single-turn rows must ask one question"):
        prepare([str(source)], tmp_path / "out", PrepareConfig(max_prompt_tokens=None))
