"""docs/reference/ is generated from the code and committed; it must be what the code gives."""

from pydantic import BaseModel

import rmr1_plugins
from rmr1_plugins.devtools import reference
from rmr1_plugins.rewards.config import RewardConfig


def test_the_committed_reference_is_what_the_code_gives():
    stale = reference.stale()
    assert not stale, f"docs/reference is stale ({', '.join(stale)}): run `{reference.COMMAND}`"


def test_check_reports_a_changed_or_missing_page(tmp_path, capsys):
    assert reference.main(["--out", str(tmp_path)]) == 0
    assert reference.main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "api.md").write_text("edited by hand\n")
    (tmp_path / "hooks.md").unlink()
    assert reference.main(["--check", "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"stale: {tmp_path / 'api.md'}",
        f"stale: {tmp_path / 'hooks.md'}",
    ]


def test_every_public_name_and_reward_key_is_listed():
    pages = reference.pages()
    assert all(f"## `{name}`\n" in pages["api.md"] for name in rmr1_plugins.__all__)
    keys = [
        f"{name}.{key}"
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
        else name
        for name, info in RewardConfig.model_fields.items()
        for key in getattr(info.annotation, "model_fields", {None: None})
    ]
    assert len(keys) > len(RewardConfig.model_fields)  # the sections' keys, walked into
    assert all(f"| `reward.{key}` |" in pages["settings.md"] for key in keys)
    assert "## `rmr1_register_strategies`" in pages["hooks.md"]


def test_the_pages_are_the_same_on_a_second_run():
    assert reference.pages() == reference.pages()
