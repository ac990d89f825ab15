"""JSONL input and output with errors that name the file, the line and the field."""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, TypeVar, cast

from pydantic import ValidationError

from rmr1_plugins.errors import UsageError

T = TypeVar("T")
# A \uD800-\uDFFF escape: the only way valid UTF-8 JSON text can hold a lone surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


class InputError(UsageError, ValueError):
    """Bad input: ``source`` and ``line`` say where (no line: the whole file), the message what."""

    def __init__(self, source: str, line: int | None, message: str) -> None:
        where = source if line is None else f"{source}, line {line}"
        super().__init__(f"{where}: {message}")
        self.source, self.line = source, line


class OutputError(UsageError, OSError):
    """An output that cannot be written (missing folder, a directory, a full disk)."""


@contextmanager
def open_input(path: str | Path) -> Iterator[IO[str]]:
    """Open a file for reading as UTF-8, or stdin for ``-``; a missing file is an InputError."""
    if str(path) == "-":
        yield sys.stdin
        return
    try:
        handle = open(path, encoding="utf-8", newline="")  # noqa: SIM115 - closed below
    except OSError as error:
        raise InputError(str(path), None, f"cannot read it ({_reason(error)})") from None
    with handle:
        yield handle


def read_rows(handle: IO[str], source: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each non-blank line; raises :class:`InputError`."""
    line_number = 0
    while True:
        try:
            line = handle.readline()
        except UnicodeDecodeError as error:
            raise InputError(source, line_number + 1, f"not valid UTF-8 ({error.reason})") from None
        if not line:
            return
        line_number += 1
        if not line.strip():
            continue
        row = _loads(line, source, line_number)
        if not isinstance(row, dict):
            raise InputError(
                source, line_number, f"expected a JSON object, got {type(row).__name__}"
            )
        yield line_number, row


def _loads(line: str, source: str, line_number: int) -> Any:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise InputError(source, line_number, f"not valid JSON ({error.msg})") from None
    except RecursionError:
        raise InputError(source, line_number, "not valid JSON (nested too deeply)") from None
    except ValueError:  # the only other one: an integer longer than Python converts
        limit = sys.get_int_max_str_digits()
        message = f"not valid JSON (an integer with more than {limit} digits)"
        raise InputError(source, line_number, message) from None
    if _SURROGATE_ESCAPE.search(line):  # rare: check the parsed strings only then
        try:
            json.dumps(row, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as error:
            bad = error.object[error.start : error.end].encode("unicode_escape").decode()
            message = f"a string holds a lone surrogate ({bad}), which is not valid Unicode"
            raise InputError(source, line_number, message) from None
    return row


def convert(row: dict[str, Any], build: Callable[[dict[str, Any]], T], source: str, line: int) -> T:
    """Build a model from a row, turning validation errors into an :class:`InputError`."""
    try:
        return build(row)
    except ValidationError as error:
        problems = []
        for problem in error.errors():
            field = ".".join(str(part) for part in problem["loc"]) or "row"
            message = problem["msg"]
            if problem["type"] == "extra_forbidden":
                message = "unknown field"
            problems.append(f"field '{field}': {message}")
        raise InputError(source, line, "; ".join(problems)) from None
    except (ValueError, TypeError, KeyError) as error:
        raise InputError(source, line, str(error)) from None


def write_row(handle: IO[str], row: Any, name: str | None = None) -> None:
    """Write one JSON line and flush, so an interrupted run keeps every finished row.

    A failed write (a full disk) raises :class:`OutputError` naming ``name`` (default: the
    handle's own name)."""
    try:
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        handle.flush()
    except BrokenPipeError:
        raise  # the reader left (`| head`): not an error; the command stops quietly
    except OSError as error:
        where = name or str(getattr(handle, "name", "output"))
        raise OutputError(f"{where}: cannot write ({_reason(error)})") from None


@contextmanager
def open_output(path: str | Path) -> Iterator[IO[str]]:
    """Write a file, or stdout for ``-``, without ever destroying what ``path`` held before.

    A regular file is written beside ``path`` (a temporary file in the same folder) and renamed
    over it when the block ends without an error, so a failed run leaves an existing file as it
    was. On failure, rows already written are kept: in ``path`` when it did not exist, else in
    ``path.partial``; a failure before any row leaves nothing behind. Devices and pipes
    (``/dev/null``, a FIFO) are written directly. A missing folder or a directory is an
    :class:`OutputError` before anything is written.
    """
    if str(path) == "-":
        yield sys.stdout
        return
    name = str(path)
    target = Path(os.path.realpath(path))  # write beside a symlink's target, keep the link
    if target.is_dir():
        raise OutputError(f"{name}: is a directory, not a file")
    existing = target.stat() if target.exists() else None
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        try:
            handle = open(target, "w", encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError as error:
            raise OutputError(f"{name}: cannot write ({_reason(error)})") from None
        with _closing(handle, name):
            yield handle
        return
    if not target.parent.is_dir():
        raise OutputError(f"{name}: cannot write (folder {target.parent} does not exist)")
    try:
        fd, temporary = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
        )
    except OSError as error:
        raise OutputError(f"{name}: cannot write ({_reason(error)})") from None
    os.chmod(temporary, existing.st_mode & 0o777 if existing else 0o666 & ~_umask())
    done = False
    try:
        with _closing(open(fd, "w", encoding="utf-8"), name) as temporary_handle:
            yield cast(IO[str], _Named(temporary_handle, name))
        done = True
    finally:
        _settle(Path(temporary), target, name, done, existing is not None)


@contextmanager
def _closing(handle: IO[str], name: str) -> Iterator[IO[str]]:
    """Close ``handle`` at the end; a failing close (the last flush) is an OutputError, unless
    an error is already on its way out."""
    try:
        yield handle
    except BaseException:
        with suppress(OSError):
            handle.close()
        raise
    try:
        handle.close()
    except OSError as error:
        raise OutputError(f"{name}: cannot write ({_reason(error)})") from None


def _settle(temporary: Path, target: Path, name: str, done: bool, existed: bool) -> None:
    """Put the finished (or partial) temporary file in its place, or remove an empty one."""
    try:
        if done or (not existed and temporary.stat().st_size > 0):
            os.replace(temporary, target)
        elif temporary.stat().st_size > 0:
            partial = target.with_name(target.name + ".partial")
            os.replace(temporary, partial)
            print(
                f"note: {name} is unchanged; rows written before the failure are in {partial}",
                file=sys.stderr,
            )
        else:
            temporary.unlink()
    except OSError as error:
        if done:
            raise OutputError(f"{name}: cannot write ({_reason(error)})") from None


class _Named:
    """A text handle whose ``name`` is the destination, not the temporary file."""

    def __init__(self, handle: IO[str], name: str) -> None:
        self._handle, self.name = handle, name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._handle, attribute)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _reason(error: OSError) -> str:
    return error.strerror or str(error)
