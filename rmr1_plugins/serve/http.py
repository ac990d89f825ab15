"""The HTTP edge of ``rmr1 serve``: everything a client controls before a sample exists.

Reading a body within a size limit and a deadline (``Content-Encoding`` decoded here, bounded),
decoding its JSON, checking the token, logging without secrets, and binding the listening
sockets before the judge loads, so that start-up errors come first. Every refusal is a
:class:`ProtocolError` with its HTTP status; :mod:`rmr1_plugins.serve.app` answers it in JSON.
This module needs aiohttp (the ``serve`` extra).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import socket
import sys
import urllib.parse
import zlib
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from rmr1_plugins.config import ConfigError
from rmr1_plugins.errors import RMR1Error

# Content-Encoding -> zlib window bits (47 = 32 + 15: a gzip or a zlib header, detected).
CODINGS: dict[str, int | None] = {"identity": None, "gzip": 47, "x-gzip": 47, "deflate": 47}


class ProtocolError(RMR1Error, ValueError):
    """A request refused with ``status``; ``close`` ends the connection after the answer."""

    def __init__(self, status: int, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.close = close


class ClientGone(ProtocolError):
    """The client closed the connection before its body was complete."""

    def __init__(self, received: int) -> None:
        super().__init__(400, f"connection closed after {received} bytes of the body", close=True)


async def read_body(request: web.BaseRequest, limit: int, timeout_s: float) -> bytes:
    """The decoded body: at most ``limit`` bytes before and after decoding, all received within
    ``timeout_s`` seconds. Reading stops as soon as a limit is passed."""
    if (request.content_length or 0) > limit:
        raise ProtocolError(413, f"body larger than {limit} bytes", close=True)
    codings = ", ".join(request.headers.getall("Content-Encoding", ()))  # two headers: two codings
    coding = codings.strip().lower() or "identity"
    if coding not in CODINGS:
        raise ProtocolError(
            415, f"Content-Encoding {coding[:40]!r} is not supported (identity, gzip or deflate)"
        )
    try:
        return await asyncio.wait_for(_read(request, limit, CODINGS[coding]), timeout_s)
    except asyncio.TimeoutError:
        raise ProtocolError(408, f"body not received within {timeout_s:g} s", close=True) from None


async def _read(request: web.BaseRequest, limit: int, wbits: int | None) -> bytes:
    decoder = zlib.decompressobj(wbits) if wbits else None
    body = bytearray()
    received = 0
    try:
        while chunk := await request.content.readany():
            received += len(chunk)
            if received > limit:
                raise ProtocolError(413, f"body larger than {limit} bytes", close=True)
            if decoder is not None:
                chunk = decoder.decompress(chunk, limit + 1 - len(body))
            body += chunk
            if len(body) > limit:
                raise ProtocolError(413, f"body larger than {limit} bytes once decoded", close=True)
    except ConnectionError:
        raise ClientGone(received) from None
    except zlib.error as bad:
        raise ProtocolError(400, f"body is not valid gzip or deflate data ({bad})") from None
    except web.RequestPayloadError as bad:  # broken chunked framing, a short body
        raise ProtocolError(400, f"body is malformed: {bad.args[0] if bad.args else bad}") from None
    if decoder is not None and (not decoder.eof or decoder.unused_data):
        raise ProtocolError(400, "body is not one complete gzip or deflate stream")
    return bytes(body)


def decode_json(raw: bytes) -> Any:
    """The JSON value of a UTF-8 body; :class:`ProtocolError` (400) naming what is wrong."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        where = f"byte {bad.start}: {bad.reason}"
        raise ProtocolError(400, f"body is not valid UTF-8 ({where})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as bad:
        raise ProtocolError(
            400, f"body is not valid JSON ({bad.msg} at line {bad.lineno} col {bad.colno})"
        ) from None
    except RecursionError:
        raise ProtocolError(400, "body is nested too deeply to decode") from None
    except ValueError:  # the only other failure: an integer over Python's digit limit
        limit = getattr(sys, "get_int_max_str_digits", lambda: "the allowed")()
        raise ProtocolError(400, f"body has an integer with more than {limit} digits") from None


def authorized(request: web.BaseRequest, token: str) -> bool:
    """Whether the request carries ``token``: ``Authorization: Bearer <token>`` (the scheme in
    any case), else ``?token=<token>`` in the URL. Compared in constant time."""
    scheme, _, credentials = request.headers.get("Authorization", "").strip().partition(" ")
    given = credentials.strip() if scheme.lower() == "bearer" else request.query.get("token", "")
    return hmac.compare_digest(_utf8(given), _utf8(token))


def _utf8(text: str) -> bytes:
    # Header bytes that are not UTF-8 arrive as surrogate escapes: they must compare, not raise.
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


class AccessLog(AbstractAccessLogger):
    """One line per request: client, method, path, status, bytes, seconds; never the token.

    A path that matched a route is logged as the route (``/get_reward``). Any other path is cut
    at its first character outside ``A-Z a-z 0-9 / _ . -`` (so ``%``, ``?``, ``=`` and what
    follows them never show: ``/get_reward%3Ftoken=...`` and its double encodings are
    ``/get_reward…``), and withheld if it holds the token once decoded (:attr:`token`, set by
    :meth:`with_token`). The query string and the headers are left out.
    """

    token: str | None = None

    @classmethod
    def with_token(cls, token: str | None) -> type[AccessLog]:
        return type(cls.__name__, (cls,), {"token": token})

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %s %.3fs',
            request.remote,
            request.method if request.method.isalpha() else "(method)",
            self.path(request),
            response.status,
            response.body_length,
            time,
        )

    def path(self, request: web.BaseRequest) -> str:
        try:
            canonical = request.match_info.route.resource.canonical  # type: ignore[attr-defined]
        except Exception:  # no route matched, or the request never reached routing
            canonical = None
        if isinstance(canonical, str) and canonical:
            return canonical
        raw = request.raw_path.split("?", 1)[0][:400]  # the query string is never logged
        if self.token and self.token in _decoded(raw):
            return "(a path holding the token)"
        safe = _SAFE_PATH.match(raw)
        kept = safe.group(0)[:200] if safe else ""
        return kept if kept == raw else kept + "…"


_SAFE_PATH = re.compile(r"[A-Za-z0-9/_.\-]*")


def _decoded(text: str) -> str:
    """``text`` percent-decoded until nothing changes (at most 8 times: bounded work)."""
    for _ in range(8):
        decoded = urllib.parse.unquote(text, errors="replace")
        if decoded == text:
            break
        text = decoded
    return text


class ConnectionLog(logging.LoggerAdapter):
    """aiohttp's connection logger, minus what a client controls: a request that is not valid
    HTTP, or a connection lost while answering, is one INFO line naming the error's type, not
    an ERROR with a traceback quoting the request line (which may hold the token)."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, (HttpProcessingError, ConnectionError)):
            self.logger.info("rmr1 serve: refused a malformed request (%s)", type(exc).__name__)
        else:
            self.logger.log(level, msg, *args, **kwargs)


def bind(host: str, port: int) -> list[socket.socket]:
    """Sockets bound to every address of ``host`` (all interfaces when empty), not yet
    listening: connections are refused until the server starts. ``port`` 0 picks one port
    shared by all. Raises :class:`ConfigError` naming the host or port."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {port}")
    try:
        found = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (OSError, UnicodeError) as bad:
        raise ConfigError(f"--host {host!r}: cannot resolve it ({_reason(bad)})") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(found):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if len(sockets) > 1:
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
    except OSError as bad:
        for sock in sockets:
            sock.close()
        raise ConfigError(f"cannot listen on {host or '*'}:{port}: {_reason(bad)}") from None
    return sockets


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error)
