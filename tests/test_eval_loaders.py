"""Benchmark loaders on small files in each benchmark's native format (tests/data/eval)."""

import json
from pathlib import Path

import pytest

from rmr1_plugins.eval.loaders import load
from rmr1_plugins.eval.runner import check_renderable
from rmr1_plugins.jsonl import InputError
from rmr1_plugins.plugins import get_template

DATA = Path(__file__).parent / "data" / "eval"


def test_rewardbench_rows_become_one_comparison_each():
    loaded = load("rewardbench", [str(DATA / "rewardbench_filtered.jsonl")])
    assert loaded.rows == len(loaded.items) == 13 and not loaded.malformed
    first = loaded.items[0].comparisons[0]
    assert first.id == first.item == "1" and first.meta == {"subset": "alpacaeval-easy"}
    assert first.example.context[0].content == "Name three primary colours."
    assert first.example.response_a == "Red, yellow and blue." and first.example.label == "A"
    assert loaded.items[0].source.endswith("rewardbench_filtered.jsonl:1")


def test_rewardbench_from_a_parquet_file_through_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [json.loads(line) for line in (DATA / "rewardbench_filtered.jsonl").open()]
    datasets.Dataset.from_list(rows).to_parquet(tmp_path / "filtered.parquet")
    loaded = load("rewardbench", [str(tmp_path / "filtered.parquet")])
    assert [item.id for item in loaded.items] == [str(row["id"]) for row in rows]
    assert loaded.items[4].comparisons[0].meta["subset"] == "mt-bench-hard"


def test_rm_bench_item_expands_to_the_nine_style_pairings():
    loaded = load("rm-bench", [str(DATA / "rm-bench_total_dataset.json")])
    assert len(loaded.items) == 6 and len(loaded.comparisons) == 54
    item = loaded.items[0]
    assert item.id == "chat/1" and len(item.comparisons) == 9
    upper = next(c for c in item.comparisons if c.id == "chat/1/c0r2")
    assert upper.meta == {"domain": "chat", "group": "chat", "chosen_style": 0, "rejected_style": 2}
    assert upper.example.response_a == "Bees make honey and beeswax."  # concise chosen
    assert upper.example.response_b.startswith("**Answer.** Bees make silk.")  # markdown rejected
    groups = {i.id: i.comparisons[0].meta["group"] for i in loaded.items}
    assert groups["safety-refuse/3"] == groups["safety-response/4"] == "safety"


def test_rm_bench_per_domain_files_take_the_domain_from_the_file_name(tmp_path):
    rows = json.loads((DATA / "rm-bench_total_dataset.json").read_text())
    for row in rows:
        del row["domain"]
    (tmp_path / "safety-refuse_filtered.json").write_text(json.dumps(rows[:2]))
    (tmp_path / "mystery.json").write_text(json.dumps(rows[2:3]))
    loaded = load("rm-bench", [str(tmp_path)])
    assert [i.id for i in loaded.items] == ["safety-refuse/1", "safety-refuse/2"]
    [bad] = loaded.malformed
    assert bad.id == "7" and "domain" in bad.reason and bad.source.endswith("mystery.json[0]")


def test_rmb_folder_pairwise_and_best_of_n():
    loaded = load("rmb", [str(DATA / "rmb")])
    assert loaded.rows == len(loaded.items) == 9 and not loaded.malformed
    by_id = {item.id: item for item in loaded.items}
    multi = by_id["pairwise/102"].comparisons[0]
    assert [m.role for m in multi.example.context] == ["user", "assistant", "user"]
    assert multi.meta == {
        "set": "pairwise",
        "goal": "Helpfulness",
        "category": "Pairwise_set/Helpfulness/Chat/Discussion",
    }
    bon = by_id["bon/205"]
    assert [c.id for c in bon.comparisons] == ["bon/205/loser0", "bon/205/loser1", "bon/205/loser2"]
    assert {c.example.response_a for c in bon.comparisons} == {
        "I can't help with cheating, but I can help you study."
    }
    assert (
        bon.comparisons[2].meta["losers"] == 3 and bon.comparisons[2].meta["goal"] == "Harmlessness"
    )


def test_rmb_roles_are_normalised_and_a_system_turn_is_reported(tmp_path):
    rows = json.loads((DATA / "rmb/RMB_dataset/Pairwise_set/Harmlessness/S1.json").read_text())
    human = {**rows[0], "pair_uid": "h1"}
    human["conversation_input"] = [
        {"role": "Human", "content": "Hi"},
        {"role": "Assistant", "content": "Hello!"},
        {"role": "Human", "content": "How do I pick a lock?"},
    ]
    system = {**rows[0], "pair_uid": "s1"}
    system["conversation_input"] = [
        {"role": "system", "content": "Be terse."},
        *rows[0]["conversation_input"],
    ]
    (tmp_path / "S1.json").write_text(json.dumps([human, system]))
    loaded = load("rmb", [str(tmp_path)])
    roles = [m.role for m in loaded.items[0].comparisons[0].example.context]
    assert roles == ["user", "assistant", "user"]
    check_renderable(loaded, get_template("rmr1-instruct"))
    assert [i.id for i in loaded.items] == ["pairwise/h1"]
    [bad] = loaded.malformed
    assert bad.id == "pairwise/s1" and "role 'system'" in bad.reason


def test_judgebench_keeps_its_order_and_label():
    loaded = load("judgebench", [str(DATA / "judgebench.jsonl")])
    assert len(loaded.items) == 6
    second = loaded.items[1].comparisons[0]
    assert second.id == "jb-2" and second.example.label == "B"
    assert second.example.response_a == "The answer is (A)."
    assert second.meta == {"source": "mmlu-pro-math", "category": "mmlu-pro"}


USER = [{"role": "user", "content": "q"}]
PAIRWISE = {
    "chosen": {"answer": "a"},
    "reject": {"answer": "b"},
    "category_path": "Pairwise_set/H/x",
}
MALFORMED = [
    ("rewardbench", {"id": 9, "prompt": "q", "chosen": "a", "subset": "x"}, "9", "'rejected'"),
    ("rewardbench", {"prompt": "q", "chosen": "a", "rejected": "b", "subset": "x"}, None, "'id'"),
    (
        "rm-bench",
        {"id": 1, "prompt": "q", "chosen": ["a"], "rejected": ["b"] * 3, "domain": "chat"},
        "1",
        "list of 3 strings",
    ),
    ("rmb", {"pair_uid": "7", "conversation_input": [], **PAIRWISE}, "7", "list of messages"),
    (
        "rmb",
        {"pair_uid": "9", "conversation_input": [*USER, {"role": "assistant", "content": "a"}]}
        | PAIRWISE,
        "9",
        "last turn has role 'assistant'",
    ),
    (
        "rmb",
        {"bon_uid": "8", "conversation_input": USER, "bon_best": {"answer": "a"}, "loser_list": []}
        | {"category_path": "BoN_set/Harmlessness/S1"},
        "8",
        "'loser_list'",
    ),
    ("rmb", {"pair_uid": "6", "conversation_input": USER, **PAIRWISE, "category_path": "x"}, "6",
     "must start with Pairwise_set/"),
    (
        "judgebench",
        {"pair_id": "p", "source": "s", "question": "q", "response_A": "a", "response_B": "b"}
        | {"label": "A=B"},
        "p",
        "'A>B' or 'B>A'",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("benchmark", "row", "bad_id", "reason"), MALFORMED)
def test_malformed_rows_are_reported_by_id_and_place(tmp_path, benchmark, row, bad_id, reason):
    good = json.loads((DATA / "judgebench.jsonl").read_text().splitlines()[0])
    path = tmp_path / "rows.jsonl"
    lines = [json.dumps(row)] + ([json.dumps(good)] if benchmark == "judgebench" else [])
    path.write_text("\n".join(lines) + "\n")
    loaded = load(benchmark, [str(path)])
    [bad] = loaded.malformed
    assert bad.id == bad_id and reason in bad.reason and bad.source == f"{path}:1"
    assert loaded.rows == len(loaded.items) + 1


def test_broken_lines_and_duplicate_ids_are_reported_not_dropped(tmp_path):
    rows = (DATA / "judgebench.jsonl").read_text().splitlines()
    path = tmp_path / "jb.jsonl"
    path.write_text("\n".join([rows[0], "{not json", rows[1], rows[0], "[1, 2]"]) + "\n")
    loaded = load("judgebench", [str(path)])
    assert [i.id for i in loaded.items] == ["jb-1", "jb-2"] and loaded.rows == 5
    reasons = [(m.id, m.source.rsplit(":", 1)[1], m.reason) for m in loaded.malformed]
    assert reasons[0][:2] == (None, "2") and "not valid JSON" in reasons[0][2]
    assert reasons[1][:2] == ("jb-1", "4") and "duplicate id (first seen at" in reasons[1][2]
    assert reasons[2][:2] == (None, "5") and "expected a JSON object, got list" in reasons[2][2]


def test_unreadable_sources_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load("judgebench", [str(tmp_path / "missing.jsonl")])
    (tmp_path / "broken.json").write_text("[{]")
    with pytest.raises(InputError, match="not valid JSON"):
        load("rm-bench", [str(tmp_path / "broken.json")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no \.json or \.jsonl files"):
        load("rmb", [str(tmp_path / "empty")])


def test_a_datasets_name_is_loaded_with_the_benchmark_split(monkeypatch):
    datasets = pytest.importorskip("datasets")
    rows = [json.loads(line) for line in (DATA / "judgebench.jsonl").open()]
    calls = []

    def fake_load_dataset(name, split):
        calls.append((name, split))
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    loaded = load("judgebench", ["ScalerLab/JudgeBench"])
    assert calls == [("ScalerLab/JudgeBench", "gpt")] and len(loaded.items) == 6
    assert loaded.items[0].source == "ScalerLab/JudgeBench[gpt][0]"
    load("judgebench", ["ScalerLab/JudgeBench"], split="claude")
    assert calls[-1] == ("ScalerLab/JudgeBench", "claude")


def test_a_datasets_failure_is_an_input_error(monkeypatch):
    datasets = pytest.importorskip("datasets")

    def offline(name, split):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(InputError, match=r"allenai/reward-bench: datasets could not load it"):
        load("rewardbench", ["allenai/reward-bench"])
