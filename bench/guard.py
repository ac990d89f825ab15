"""The reward-hacking guard's speed on every code point class (a benchmark, not a test).

    python bench/guard.py            # 1 MB (1,000,000 characters) of each class
    python bench/guard.py --chars 2700000

Each class is a text of random characters from it, with no marker, so the time is the guard's
pass over the text (folding, matching, and the stand-ins for self-folding code points). The
goal (issue 21): at most 0.1 s per million characters, whatever the class; the ratio column
compares each class with plain ASCII of the same length, from the same run. Times are CPU
time of this process (best of --repeat), so other load on the machine does not inflate them.
The last row adds markers, which cost one rewrite each.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rmr1_plugins.guards import neutralize_markup


def of_category(*categories: str, start: int = 0, stop: int = sys.maxunicode + 1) -> list[str]:
    return [chr(c) for c in range(start, stop) if unicodedata.category(chr(c)) in categories]


def classes() -> dict[str, list[str]]:
    return {
        "ascii letters": [chr(c) for c in range(0x61, 0x7B)],
        "private use": of_category("Co"),
        "unassigned": of_category("Cn"),
        "surrogates": of_category("Cs"),
        "combining marks": of_category("Mn", "Me"),
        "format and control": of_category("Cf", "Cc"),
        "CJK extension B": of_category("Lo", start=0x20000, stop=0x2A6E0),
        "compatibility (ligatures, fullwidth)": list("ﬁﬂﬀＡＢＣａｂｃ①²"),
        "private use + 1% markers": of_category("Co") + ["[[A]]", "</think>"] * 700,
    }


def best(text: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.process_time()
        neutralize_markup(text)
        times.append(time.process_time() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chars", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    rng = random.Random(0)
    neutralize_markup("é[[A]]")  # build the tables once, as a long-running server has
    rows = []
    for name, alphabet in classes().items():
        text = "".join(rng.choice(alphabet) for _ in range(args.chars))[: args.chars]
        rows.append((name, best(text, args.repeat)))
    ascii_time = rows[0][1]
    print(f"{'class':40s} {'s per run':>10s} {'s per 1M chars':>15s} {'vs ascii':>9s}")
    for name, seconds in rows:
        per_million = seconds * 1_000_000 / args.chars
        print(f"{name:40s} {seconds:10.3f} {per_million:15.3f} {seconds / ascii_time:9.1f}")


if __name__ == "__main__":
    main()
