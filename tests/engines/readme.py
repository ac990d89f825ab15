"""The README's shell commands, read from README.md itself, so that the tests that run them
break when the README changes."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"
BLOCK = re.compile(r"^```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)


def commands(text: str | None = None) -> list[str]:
    """Every command of the README's ``bash`` blocks: continuation lines joined, comments and
    blank lines dropped."""
    text = README.read_text(encoding="utf-8") if text is None else text
    found = []
    for block in BLOCK.findall(text):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split("  #", 1)[0].strip()
            if line and not line.startswith("#"):
                found.append(" ".join(line.split()))
    return found


def command(prefix: str) -> str:
    """The one README command that starts with ``prefix``."""
    [found] = [c for c in commands() if c.startswith(prefix)]
    return found


def substitutions(line: str) -> list[str]:
    """The ``$(...)`` command substitutions of a line, as written."""
    return re.findall(r"\$\(([^()]*)\)", line)


def argv(line: str, values: dict[str, str]) -> list[str]:
    """``line`` split as the shell would, each ``"$(...)"`` replaced by ``values[...]``
    (the command's output), without the leading program name."""
    for inner in substitutions(line):
        line = line.replace(f'"$({inner})"', shlex.quote(values[inner]))
    words = shlex.split(line)
    return words[1:]
