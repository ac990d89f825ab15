"""``rmr1 serve`` against hostile clients: a real process on 127.0.0.1, spoken to over raw sockets.

Each request is bounded: at most a few hundred KB, except the body-limit test, which offers up to
128 MiB and must be cut off long before; every socket has a 20 s timeout as a hang guard.
"""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import sys
import time
import zlib

import pytest
from pydantic import ValidationError

from rmr1_plugins.rewards.config import RewardConfig
from rmr1_plugins.testing.judges import expected_reward
from rmr1_plugins.testing.serving import PROMPT, Server

pytest.importorskip("aiohttp")

TOKEN = "tok-5f3e9a"
GUARD_S = 20.0  # hang guard for every socket operation


@pytest.fixture(scope="module")
def server():
    running = Server(
        "--max-body-bytes", "200000", "--max-pending", "4", "--access-log",
        env={"RMR1_SERVE_TOKEN": TOKEN},
    )  # fmt: skip
    yield running
    assert running.stop() == 0


def payload(*texts: str) -> bytes:
    return json.dumps(
        {
            "query": [PROMPT + t + "<|im_end|>" for t in texts],
            "prompts": [PROMPT] * len(texts),
            "labels": ["reference"] * len(texts),
        }
    ).encode()


def request(
    data: bytes = b"",
    headers: dict[str, str | list[str]] | None = None,
    *,
    path: str = f"/get_reward?token={TOKEN}",
    method: str = "POST",
    raw_headers: bytes = b"",
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    fields = {"Content-Length": str(len(data)), **(headers or {})}
    for name, value in fields.items():  # a list: the header repeated
        lines += [f"{name}: {one}" for one in (value if isinstance(value, list) else [value])]
    return "\r\n".join(lines).encode() + b"\r\n" + raw_headers + b"\r\n" + data


def connect(server: Server) -> socket.socket:
    return socket.create_connection(server.address, timeout=GUARD_S)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes] | None:
    """One HTTP response (status, lower-cased headers, body), or None if the server closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            assert not data, f"connection closed inside a response head: {data!r}"
            return None
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *fields = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (f.split(":", 1) for f in fields)}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside a response body"
        body += chunk
    return int(status_line.split()[1]), headers, body


def chunked_head() -> bytes:
    """A request head announcing a chunked body, without a Content-Length."""
    head = request(headers={"Transfer-Encoding": "chunked"})
    return head.replace(b"Content-Length: 0\r\n", b"")


def exchange(server: Server, data: bytes) -> tuple[int, dict[str, str], bytes]:
    with connect(server) as sock:
        sock.sendall(data)
        answer = read_response(sock)
    assert answer is not None, "no answer"
    return answer


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed the connection (reading what it still sends), within GUARD_S."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def until(condition, every: float = 0.05) -> None:
    """Poll ``condition(calls so far)`` until true; fail after GUARD_S."""
    end = time.monotonic() + GUARD_S
    calls = 0
    while not condition(calls):
        calls += 1
        assert time.monotonic() < end, "condition never met"
        time.sleep(every)


def stats(server: Server) -> dict:
    status, _, body = exchange(server, request(method="GET", path=f"/stats?token={TOKEN}"))
    assert status == 200
    return json.loads(body)


@pytest.fixture
def quiet(server):
    """Checks, after the test, that the server logged no ERROR and no traceback meanwhile."""
    start = len(server.logged())
    yield
    exchange(server, request(method="GET", path=f"/quiet-marker?token={TOKEN}"))
    server._wait_for("/quiet-marker")  # everything logged before it has arrived
    log = server.logged()[start:]
    assert "Traceback" not in log and " ERROR " not in log, log


HOSTILE = {
    "nested 100k deep": (b"[" * 100_000, {}, 400, "body is nested too deeply to decode"),
    "5000-digit integer": (
        b'{"query": [], "prompts": [], "labels": [' + b"7" * 5000 + b"]}",
        {},
        400,
        "body has an integer with more than 4300 digits",
    ),
    "gzip header, plain body": (payload("r1"), {"Content-Encoding": "gzip"}, 400, "not valid gzip"),
    "truncated gzip": (
        gzip.compress(payload("r1"))[:-12],
        {"Content-Encoding": "gzip"},
        400,
        "not one complete gzip",
    ),
    "gzip bomb": (
        gzip.compress(b" " * 20_000_000),
        {"Content-Encoding": "gzip"},
        413,
        "larger than 200000 bytes once decoded",
    ),
    "brotli": (payload("r1"), {"Content-Encoding": "br"}, 415, "'br' is not supported"),
    "unknown encoding": (payload("r1"), {"Content-Encoding": "x-rot13"}, 415, "not supported"),
    "two encodings": (payload("r1"), {"Content-Encoding": "gzip, gzip"}, 415, "not supported"),
    "two encoding headers": (
        payload("r1"),
        {"Content-Encoding": ["gzip", "gzip"]},
        415,
        "'gzip, gzip' is not supported",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_bodies_get_a_json_4xx_never_a_500(server, quiet, case):
    data, headers, status, message = HOSTILE[case]
    got, fields, body = exchange(server, request(data, headers))
    assert (got, fields["content-type"].split(";")[0]) == (status, "application/json"), body
    assert message in json.loads(body)["error"]


def test_a_non_ascii_authorization_header_is_a_401(server, quiet):
    data = request(
        payload("r1"), path="/get_reward", raw_headers=b"Authorization: Bearer t\xe9\r\n"
    )
    got, _, body = exchange(server, data)
    assert (got, json.loads(body)) == (401, {"error": "missing or wrong token"})


def test_gzip_and_deflate_bodies_are_still_judged(server):
    for coding, packed in (("gzip", gzip.compress), ("deflate", zlib.compress)):
        got, _, body = exchange(
            server, request(packed(payload("r5")), {"Content-Encoding": coding})
        )
        assert (got, json.loads(body)["rewards"]) == (200, [expected_reward(5)]), coding


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer "])
def test_the_bearer_scheme_is_case_insensitive(server, scheme):
    headers = {"Authorization": f"{scheme} {TOKEN}"}
    got, _, body = exchange(server, request(payload("r4"), headers, path="/get_reward"))
    assert (got, json.loads(body)["rewards"]) == (200, [expected_reward(4)])


def test_health_shows_configuration_only_with_the_token(server):
    status, _, body = exchange(server, request(method="GET", path="/health"))
    public = json.loads(body)
    assert status == 200 and public["status"] == "ok"  # still open for liveness checks
    assert set(public) == {"status", "pending", "uptime_s"}
    assert b"votes" not in body
    _, _, body = exchange(server, request(method="GET", path=f"/health?token={TOKEN}"))
    assert json.loads(body)["backend"] == "votes"


def test_more_samples_than_max_pending_is_a_413_saying_so(server):
    got, _, body = exchange(server, request(payload(*(f"r{i}" for i in range(5)))))
    assert got == 413  # a 503 would make the client retry forever
    assert "5 samples in one request, more than --max-pending 4" in json.loads(body)["error"]


def test_a_client_leaving_mid_body_is_no_500_and_no_traceback(server, quiet):
    before = stats(server)["http"]
    with connect(server) as sock:
        sock.sendall(request(payload("r1"))[:-40])
        # Leave only once the server is reading the body: it has counted the request (each
        # /stats call counts one too).
        until(lambda calls: stats(server)["http"]["requests"] - before["requests"] > calls + 1)

    def answered(_: int) -> bool:
        now = stats(server)["http"]
        return now.get("disconnected", 0) > before.get("disconnected", 0) or "status_500" in now

    until(answered)
    after = stats(server)["http"]
    assert after.get("disconnected", 0) == before.get("disconnected", 0) + 1
    assert "status_500" not in after


def test_the_token_never_reaches_the_log(server, quiet):
    exchange(server, request(payload("r2")))  # token in the URL
    exchange(server, request(payload("r2"), {"Authorization": f"Bearer {TOKEN}"}, path="/"))
    with connect(server) as sock:  # not HTTP: aiohttp's own error path
        sock.sendall(f"POST /get_reward?token={TOKEN} HTTP/1.1\r\nbad\x01line\r\n\r\n".encode())
        assert closed_by_server(sock)
    server._wait_for("refused a malformed request")
    encoded = "".join(f"%{byte:02X}" for byte in TOKEN.encode())
    disguised = [  # the token in the path, in every encoding a client might try
        f"/get_reward%3Ftoken={TOKEN}",
        f"/get_reward%253Ftoken%253D{TOKEN}",
        f"/get_reward%3Ftoken={encoded}",
        f"/{encoded.replace('%', '%25')}",
        f"/{TOKEN}%00",
        "/get_reward%3Fpage=2",  # no token: cut at the first encoded character
    ]
    for path in disguised:
        exchange(server, request(payload("r2"), path=path))
    exchange(server, request(method="GET", path=f"/log-marker?token={TOKEN}"))
    server._wait_for("/log-marker")
    log = server.logged()
    assert '"POST /get_reward" 200' in log and '"POST /" 200' in log
    assert '"POST /get_reward…" 401' in log and "(a path holding the token)" in log
    assert TOKEN not in log and encoded not in log and TOKEN[:8] not in log


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_reading_stops_once_a_body_is_over_the_limit(server, quiet, framing):
    chunk = b"x" * (1 << 20)
    if framing == "chunked":
        head = chunked_head()
        chunk = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    else:
        head = request(headers={"Content-Length": str(128 << 20)})
    sent = 0
    with connect(server) as sock:
        sock.settimeout(5)
        try:
            sock.sendall(head)
            while sent < 128 << 20:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        answer = read_response(sock)  # still readable after the server's reset
    # The server reads ~200 KB, answers 413 and closes; kernel buffers hold a few MB more.
    assert sent < 32 << 20, f"the server read {sent >> 20} MiB of a refused body"
    assert answer is not None and answer[0] == 413 and b"larger than 200000" in answer[2]


def test_a_chunked_body_over_the_limit_gets_the_413(server, quiet):
    body = b"".join(b"100\r\n" + b"y" * 256 + b"\r\n" for _ in range(800)) + b"0\r\n\r\n"
    got, fields, answer = exchange(server, chunked_head() + body)  # 204,800 bytes, no length
    assert (got, json.loads(answer)) == (413, {"error": "body larger than 200000 bytes"})
    assert fields.get("connection") == "close"


def test_idle_and_trickling_connections_are_cut_off():
    running = Server("--read-timeout-s", "1")
    try:
        with connect(running) as idle:
            assert closed_by_server(idle)  # never sent a byte
        with connect(running) as slow_head:
            head = b"POST /get_reward HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 99
            assert trickle(slow_head, head) == (True, b"")
        with connect(running) as slow_body:
            slow_body.sendall(request(payload("r1"))[: -len(payload("r1"))])
            closed, answer = trickle(slow_body, payload("r1"))
        log = running.logged()
    finally:
        assert running.stop() == 0
    assert closed and answer.startswith(b"HTTP/1.1 408 "), answer
    assert b'{"error": "body not received within 1 s"}' in answer
    assert "Traceback" not in log


def trickle(sock: socket.socket, data: bytes, every: float = 0.1) -> tuple[bool, bytes]:
    """Send ``data`` a byte at a time: whether the server closed the connection before the
    end (or GUARD_S), and what it sent."""
    sock.settimeout(every)
    end = time.monotonic() + GUARD_S
    received = b""
    for byte in data:
        if time.monotonic() > end:
            break
        try:
            sock.send(bytes([byte]))
            got = sock.recv(65536)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return True, received
        if not got:
            return True, received
        received += got
    return False, received


def test_after_sigterm_a_keep_alive_connection_takes_no_new_request():
    running = Server("--shutdown-timeout-s", "10")
    with connect(running) as kept, connect(running) as slow:
        kept.sendall(request(payload("r2"), path="/"))
        assert read_response(kept)[0] == 200
        slow.sendall(request(payload("r7 slow:2"), path="/"))
        health = request(method="GET", path="/health")
        until(lambda _: json.loads(exchange(running, health)[2])["pending"] > 0)  # it is waiting
        running.terminate()
        running._wait_for("rmr1 serve: stopping")
        try:
            kept.sendall(request(payload("r3"), path="/"))
            late = read_response(kept)
        except (BrokenPipeError, ConnectionResetError):
            late = None
        drained = read_response(slow)
    assert running.stop() == 0
    if late is not None:  # else the connection was closed before it; either way, not served
        assert (late[0], late[1].get("connection")) == (503, "close"), late
        assert json.loads(late[2]) == {"error": "shutting down"}
    assert drained[0] == 200 and json.loads(drained[2])["rewards"] == [expected_reward(7)]


def _serve(*flags: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "rmr1_plugins.cli", "serve", "--backend", "constant", *flags]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--port", "70000"], "error: --port must be between 0 and 65535, got 70000"),
        (
            ["--host", "no-such-host.invalid", "--port", "0"],
            "'no-such-host.invalid': cannot resolve",
        ),
        # checked by ServeOptions, which the flag comes from
        (
            ["--read-timeout-s", "inf", "--port", "0"],
            "--read-timeout-s: Input should be a finite number",
        ),
        (
            ["--win", "1e308", "--loss=-1e308", "--port", "0"],
            "their sum or difference overflows",
        ),
    ],
)
def test_start_up_errors_are_one_line_and_exit_2(flags, message):
    done = _serve(*flags)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert "Traceback" not in done.stderr


def test_a_port_in_use_is_one_line_and_exit_2():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _serve("--port", str(port))
    assert done.returncode == 2, done.stderr
    assert (
        done.stderr.strip() == f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    )


def test_a_reward_scale_that_overflows_is_refused():
    with pytest.raises(ValidationError, match="overflows"):
        RewardConfig(win=1e308, loss=-1e308)
    with pytest.raises(ValidationError, match="overflows"):
        RewardConfig(win=1.7e308, loss=1e308)  # the midpoint overflows
    edge = RewardConfig(win=8.9e307, loss=-8.9e307)
    assert edge.fallback_reward == 0.0 and edge.to_score(8.9e307) == 1.0
