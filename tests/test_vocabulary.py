"""One word per concept: the new spellings work, and each old one still works for one release
with a warning that names the new word (docs/core.md, "Renamed")."""

from __future__ import annotations

import json

import pytest

from rmr1_plugins import Scorer
from rmr1_plugins.cli import main
from rmr1_plugins.rewards.engine import Group, score_groups
from rmr1_plugins.testing import ScriptedJudge

GROUP = Group("Pick a number.", ["answer 1", "answer 2", "answer 3"])


def test_score_groups_takes_the_scorers_word_for_the_order():
    scorer = Scorer(ScriptedJudge())  # says A whatever it sees
    [given] = score_groups(scorer, [GROUP], "round-robin")
    [both] = score_groups(scorer, [GROUP], "round-robin", order="both")
    assert (given.judgments, both.judgments) == (3, 6)
    assert both.orders_agree == (0, 3) and scorer.order == "given"  # a view, not a change
    [again] = score_groups(Scorer(ScriptedJudge(), order="both"), [GROUP], order="given")
    assert again.judgments == 3
    with pytest.raises(ValueError, match="order must be 'given', 'random' or 'both'"):
        score_groups(scorer, [GROUP], order="both-ways")


def test_both_orders_is_the_old_spelling_and_warns():
    scorer = Scorer(ScriptedJudge())
    with pytest.warns(DeprecationWarning, match="both_orders=True was renamed order='both'"):
        [old] = score_groups(scorer, [GROUP], "round-robin", both_orders=True)
    [new] = score_groups(scorer, [GROUP], "round-robin", order="both")
    assert (old.rewards, old.judgments) == (new.rewards, new.judgments)


def test_parse_takes_parser_like_every_command_and_rule_still_works(tmp_path, capsys):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"completion": "<answer>[[B]]</answer>", "label": "B"}) + "\n")
    assert main(["parse", "--parser", "rmr1-train", str(path)]) == 0
    new = capsys.readouterr()
    assert main(["parse", "--rule", "rmr1-train", str(path)]) == 0
    old = capsys.readouterr()
    assert old.out == new.out and json.loads(new.out)["reward"] == 1.0
    assert "warning: --rule was renamed --parser" in old.err
    assert "renamed" not in new.err and new.err.startswith("rmr1 parse: 1 row")
