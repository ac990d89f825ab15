"""``rmr1 serve`` in a subprocess on 127.0.0.1, with the scripted judges of
:mod:`rmr1_plugins.testing.judges` registered as a plugin would register them.

``python -m rmr1_plugins.testing.serving serve --backend votes ...`` runs the real ``rmr1``
command line with them registered; :class:`Server` starts it for a test.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

PROMPT = "<|im_start|>user\nSay something.<|im_end|>\n<|im_start|>assistant\n"


def body(*texts: str, label: object = "reference") -> dict:
    """An OpenRLHF reward request: one sample per text, each a response to :data:`PROMPT`."""
    return {
        "query": [PROMPT + t + "<|im_end|>" for t in texts],
        "prompts": [PROMPT] * len(texts),
        "labels": [label] * len(texts),
    }


async def post(
    session: Any, url: str, payload: Any = None, data: Any = None, headers: Any = None
) -> tuple[int, Any]:
    """``(status, JSON body)`` of a POST with an ``aiohttp`` session."""
    async with session.post(url, json=payload, data=data, headers=headers) as response:
        return response.status, await response.json()


class Server:
    """``rmr1 serve`` in a subprocess, with this file's judges registered; ``url`` is its reward
    endpoint. Used by the core tests and the OpenRLHF adapter's (one launcher for both)."""

    def __init__(
        self,
        *flags: str,
        env: dict[str, str] | None = None,
        backend: str = "votes",
        num_samples: int | None = 8,
        startup_s: float = 60,
    ) -> None:
        argv = [
            sys.executable,
            "-m",
            "rmr1_plugins.testing.serving",
            "serve",
            "--backend",
            backend,
            "--port",
            "0",
        ]
        argv += ["--num-samples", str(num_samples)] if num_samples else []
        argv += ["--log-every-s", "0", *flags]
        self.process = subprocess.Popen(
            argv,
            stderr=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join(sys.path),  # the test run's own imports
                "RMR1_REWARD__SERVICE__RETRY_BACKOFF_S": "0.05",
                **(env or {}),
            },
        )
        self.terminated = False
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        try:
            ready = self._wait_for("rmr1 serve: ready at ", startup_s)
        except AssertionError:
            self.stop()
            raise
        self.url = ready.split(" at ", 1)[1].strip()
        self.base = self.url.rsplit("/", 1)[0]

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.base + path, timeout=30) as response:
            return json.load(response)

    def post(self, path: str, body: object) -> tuple[int, dict]:
        """``(status, JSON body)`` of a POST, error statuses included."""
        request = urllib.request.Request(
            self.base + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)

    def _wait_for(self, text: str, timeout: float = 60) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            self.log.append(line)
            if text in line:
                return line
        raise AssertionError(f"server never printed {text!r}:\n{''.join(self.log)}")

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.base.split("//", 1)[1].rsplit(":", 1)
        return host, int(port)

    def logged(self) -> str:
        """Everything the server has written to stderr so far."""
        while True:
            try:
                self.log.append(self.lines.get_nowait())
            except queue.Empty:
                return "".join(self.log)

    def terminate(self) -> None:
        """SIGTERM, once: a second one could land after the server's own shutdown."""
        if not self.terminated and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.terminated = True

    def stop(self) -> int:
        self.terminate()
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def main(argv: list[str]) -> int:
    """``rmr1 ARGV`` with the scripted judges registered."""
    from rmr1_plugins.cli import main as rmr1
    from rmr1_plugins.testing.judges import fake_judges

    with fake_judges():
        return rmr1(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
