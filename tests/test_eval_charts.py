"""What the charts show (issue 23): every bar labelled with its value, a zero bar visible, the
legend outside the data, RewardBench by its four sections, a readable comparison chart."""

import json
from pathlib import Path

import pytest

from rmr1_plugins.cli import main
from rmr1_plugins.eval import report as reports

pytest.importorskip("matplotlib")
DATA = Path(__file__).parent / "data" / "eval"
FILES = {
    "rewardbench": DATA / "rewardbench_filtered.jsonl",
    "judgebench": DATA / "judgebench.jsonl",
    "rm-bench": DATA / "rm-bench_total_dataset.json",
}


@pytest.fixture
def figures(monkeypatch):
    """Every figure the report draws, kept for inspection."""
    drawn = []
    make = reports._figure

    def keep(*args, **kwargs):
        drawn.append(make(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(reports, "_figure", keep)
    return drawn


def dry_run(tmp_path, benchmark, *extra):
    out = tmp_path / benchmark
    argv = ["eval", "--benchmark", benchmark, "--data", str(FILES[benchmark]), "-o", str(out)]
    assert main([*argv, "--backend", "constant", *extra]) == 0
    return json.loads((out / "report.json").read_text())


def bars_and_labels(axes):
    bars = [p for p in axes.patches if p.get_height() > 0]
    labels = [t.get_text() for t in axes.texts]
    return bars, labels


def test_every_bar_has_its_value_and_a_zero_bar_shows(tmp_path, figures, capsys):
    report = dry_run(tmp_path, "judgebench")  # the constant judge scores 0 everywhere
    assert report["metrics"]["score"] == 0.0
    figure = figures[0]  # report.png
    [axes] = figure.axes
    bars, labels = bars_and_labels(axes)
    subsets = report["metrics"]["subsets"]
    assert len(bars) == 2 * len(subsets)  # accuracy and position consistency per subset
    assert all(bar.get_width() > 0 for bar in bars)  # a 0 is drawn, not left out
    assert labels == ["0.0"] * len(bars)
    # the legend belongs to the figure, below the plot, not inside the data
    assert axes.get_legend() is None and len(figure.legends) == 1


def test_rewardbench_chart_shows_its_four_sections(tmp_path, figures, capsys):
    report = dry_run(tmp_path, "rewardbench")
    sections, subsets = figures[0].axes
    names = [t.get_text() for t in sections.get_yticklabels()][::-1]
    assert names == ["Chat", "Chat Hard", "Safety", "Reasoning"]
    bars, labels = bars_and_labels(sections)
    assert len(bars) == 4
    assert labels == [reports._num(report["metrics"]["sections"][n]) for n in names[::-1]]
    assert [line.get_xdata()[0] for line in sections.lines] == [report["metrics"]["score"]]
    assert len(bars_and_labels(subsets)[1]) == len(report["metrics"]["subsets"])


def test_a_missing_value_says_na(tmp_path, figures, capsys):
    report = dry_run(tmp_path, "rm-bench")
    assert report["metrics"]["not_scored"] == ["code"]  # no code items in the file
    parts = figures[0].axes[0]
    assert "n/a" in [t.get_text() for t in parts.texts]


def test_compare_chart_is_a_readable_table(tmp_path, figures, capsys):
    runs = [dry_run(tmp_path, b) and str(tmp_path / b) for b in FILES]
    figures.clear()
    assert main(["eval", "compare", *runs, "-o", str(tmp_path / "cmp")]) == 0
    table = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    [figure, *_] = figures
    axes = figure.axes[0]
    cells = [t.get_text() for t in axes.texts]
    expected = [reports._num(v) for row in table["rows"] for v in row["scores"].values()]
    assert sorted(cells) == sorted(expected)  # one labelled cell per score
    assert all(t.get_fontsize() >= 9 for t in axes.texts)
    width, height = figure.get_size_inches() * figure.dpi
    assert width < 1600 and width / height < 3  # not a 2595×500 strip
    assert [t.get_text() for t in axes.get_yticklabels()] == [r["label"] for r in table["rows"]]
