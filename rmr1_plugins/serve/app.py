"""``rmr1 serve``: an HTTP reward server speaking OpenRLHF's remote reward protocol.

``POST /get_reward`` (or ``POST /``) takes ``{"query": [...], "prompts": [...], "labels": [...]}``
and answers ``{"rewards": [...], "scores": [...], "extra_logs": {"rmr1_fallback": [...], ...}}``,
plus ``"error"`` when any sample got the fallback reward, saying why. Concurrent requests are
batched into few judge calls (see :mod:`rmr1_plugins.rewards.service`); every request is answered
once, within ``--timeout-s`` seconds (150 by default, under OpenRLHF's 180 s client timeout).

Protocol errors get a JSON ``{"error": ...}`` and a status: 400 (invalid UTF-8 or JSON, a missing
or mistyped field, named), 401 (missing or wrong token), 408 (body not received within
``--read-timeout-s``), 413 (body over ``--max-body-bytes``, or more samples, or cohort text, than
the server ever holds), 415 (an unsupported ``Content-Encoding``), 503 with ``Retry-After``
(more than ``--max-pending`` samples, or ``reward.service.max_pending_bytes`` of cohort text,
waiting, decided before anything of the request is held; or shutting down). ``GET /health`` and
``GET /stats`` report state; the HTTP edge (body limits, deadlines, token, logging) is
:mod:`rmr1_plugins.serve.http`.

With an in-group ``reward.strategy`` and ``reward.group.size`` over 1, ``/get_reward`` holds each
sample until its prompt's group is whole and answers whole-group rewards; ``POST /cohort`` does
the same for one JSON rollout (the veRL manager). Both are :mod:`rmr1_plugins.serve.cohort`.

The server binds 127.0.0.1 unless ``--host`` says otherwise. ``--token`` (or ``RMR1_SERVE_TOKEN``)
requires ``Authorization: Bearer <token>`` or, for clients that cannot set headers (OpenRLHF's),
``?token=<token>`` in the URL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rmr1_plugins._imports import require
from rmr1_plugins.cli_options import Flag, add_flags, overrides
from rmr1_plugins.errors import RMR1Error
from rmr1_plugins.offload import off_loop_request
from rmr1_plugins.rewards.cohort_table import Overloaded
from rmr1_plugins.rewards.cohorts import FALLBACKS, CohortService, groups_samples
from rmr1_plugins.rewards.config import GroupConfig, RewardConfig, ServiceConfig
from rmr1_plugins.rewards.health import format_rates
from rmr1_plugins.rewards.inputs import Sample
from rmr1_plugins.rewards.metrics import columns
from rmr1_plugins.rewards.service import RewardService
from rmr1_plugins.scorer import Scorer
from rmr1_plugins.settings import load_reward_settings

logger = logging.getLogger("rmr1_plugins.serve")
TOKEN_ENV = "RMR1_SERVE_TOKEN"
REWARD_PATHS = ("/", "/get_reward")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class BodyError(RMR1Error, ValueError):
    """A request body that does not follow the protocol; the message names the field."""


class ServeOptions(BaseModel):
    """The HTTP server's settings; each is a flag of ``rmr1 serve`` (:data:`SERVER_FLAGS`)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    host: str = Field("127.0.0.1", description="address to bind")
    port: int = Field(5000, description="port; 0 picks a free one")  # range: serve.http.bind
    token: str | None = Field(None, description=f"require this bearer token (or set {TOKEN_ENV})")
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1, description="largest request body")
    max_pending: int = Field(
        4096, ge=1, description="samples waiting at most; more are answered 503"
    )
    warmup: bool = Field(True, description="load the judge and run one judgment before serving")
    shutdown_timeout_s: float = Field(
        30.0, ge=0, description="seconds waiting requests get to finish on SIGTERM"
    )
    log_every_s: float = Field(60.0, description="seconds between stats lines; 0 turns them off")
    access_log: bool = Field(False, description="log every request")
    read_timeout_s: float = Field(
        60.0, gt=0, description="seconds for a request's headers, and again for its body"
    )


SERVER_FLAGS = tuple(Flag(ServeOptions, name, (name,)) for name in ServeOptions.model_fields)
# The reward: keys rmr1 serve takes as flags too (the others come from --config).
REWARD_FLAGS = (
    Flag(ServiceConfig, "timeout_s", ("service", "timeout_s")),
    Flag(ServiceConfig, "max_batch_size", ("service", "max_batch_size")),
    Flag(ServiceConfig, "max_wait_ms", ("service", "max_wait_ms")),
    Flag(ServiceConfig, "max_concurrent_batches", ("service", "max_concurrent_batches")),
    Flag(RewardConfig, "win", ("win",)),
    Flag(RewardConfig, "loss", ("loss",)),
    Flag(RewardConfig, "fallback", ("fallback",)),
    Flag(RewardConfig, "strategy", ("strategy",)),
    Flag(GroupConfig, "size", ("group", "size"), name="group-size"),
    Flag(GroupConfig, "timeout_s", ("group", "timeout_s"), name="group-timeout-s"),
)


def parse_body(body: Any) -> list[Sample]:
    """The samples in a request body; raises :class:`BodyError` naming the bad field."""
    if not isinstance(body, dict):
        raise BodyError(
            "the body must be a JSON object with 'query', 'prompts' and 'labels' lists, "
            f"got {type(body).__name__}"
        )
    lists: dict[str, list[Any]] = {}
    for name in ("query", "prompts", "labels"):
        if name not in body:
            raise BodyError(f"field '{name}': required (a list with one entry per sample)")
        value = body[name]
        if not isinstance(value, list):
            raise BodyError(f"field '{name}': must be a list, got {type(value).__name__}")
        lists[name] = value
    sizes = {name: len(value) for name, value in lists.items()}
    if len(set(sizes.values())) > 1:
        raise BodyError(f"fields 'query', 'prompts' and 'labels' differ in length: {sizes}")
    for name in ("query", "prompts"):
        for index, value in enumerate(lists[name]):
            if not isinstance(value, str):
                raise BodyError(
                    f"field '{name}[{index}]': must be a string, got {type(value).__name__}"
                )
    return [
        Sample(query, prompt, label)
        for query, prompt, label in zip(
            lists["query"], lists["prompts"], lists["labels"], strict=True
        )
    ]


def create_app(
    service: RewardService,
    options: ServeOptions | None = None,
    counts: Counter[str] | None = None,
    stopping: asyncio.Event | None = None,
    cohorts: CohortService | None = None,
    template_choice: str | None = None,
) -> Any:
    """The aiohttp application around a started :class:`RewardService`.

    ``counts`` receives the number of requests and of answers per status. Once ``stopping`` is
    set, new requests get 503 and every answer closes its connection. ``cohorts`` serves
    ``POST /cohort``, and ``/get_reward`` too when :func:`cohorts.groups_samples` holds.
    ``template_choice`` (how the judge's template was chosen) is shown by ``/health``.
    """
    web = require("aiohttp.web", "serve")
    from rmr1_plugins.serve import cohort as serve_cohort
    from rmr1_plugins.serve import http as edge

    options = options or ServeOptions()
    counts = Counter() if counts is None else counts
    started = time.monotonic()
    settings = serve_cohort.own_settings(cohorts) if cohorts is not None else {}

    def error(status: int, message: str, **headers: str) -> Any:
        return web.json_response({"error": message}, status=status, headers=headers or None)

    @web.middleware
    async def guard(request: Any, handler: Callable[[Any], Any]) -> Any:
        counts["requests"] += 1
        try:
            if stopping is not None and stopping.is_set():
                response = error(503, "shutting down", **{"Retry-After": "1"})
            elif (
                options.token
                and request.path != "/health"
                and not edge.authorized(request, options.token)
            ):
                response = error(
                    401, "missing or wrong token", **{"WWW-Authenticate": 'Bearer realm="rmr1"'}
                )
            else:
                response = await handler(request)
        except edge.ProtocolError as refused:
            counts["disconnected"] += isinstance(refused, edge.ClientGone)
            response = error(refused.status, str(refused))
            if refused.close:
                response.force_close()  # the rest of the body is never read
        except web.HTTPException as http:  # 404, 405 from routing: answer in JSON too
            response = error(http.status, http.reason)
        except Exception as bug:  # never a bare 500 page, and never unlogged
            logger.exception("rmr1 serve: request failed")
            response = error(500, f"internal error: {type(bug).__name__}: {bug}")
        if stopping is not None and stopping.is_set():
            response.force_close()  # a keep-alive connection takes no further request
        counts[f"status_{response.status}"] += 1
        return response

    async def reward(request: Any) -> Any:
        arrived = asyncio.get_running_loop().time()  # the deadline counts from here
        raw = await edge.read_body(request, options.max_body_bytes, options.read_timeout_s)
        try:  # decoding grows with the body: off the event loop
            samples = await off_loop_request(lambda: parse_body(edge.decode_json(raw)))
        except BodyError as bad:
            return error(400, str(bad))
        if cohorts is not None and groups_samples(cohorts.config):
            payload, status = await serve_cohort.openrlhf_rewards(cohorts, samples)
            counts["overloaded"] += status == 503
            retry = {"Retry-After": "1"} if status == 503 else None
            return web.json_response(payload, status=status, headers=retry)
        if len(samples) > options.max_pending:
            raise edge.ProtocolError(
                413,
                f"{len(samples)} samples in one request, more than --max-pending "
                f"{options.max_pending}: it can never be accepted; send fewer per request",
            )
        if service.pending + len(samples) > options.max_pending:
            counts["overloaded"] += 1
            return error(
                503,
                f"overloaded: {service.pending} samples waiting (limit {options.max_pending}); "
                "retry later",
                **{"Retry-After": "1"},
            )
        results = await service.rewards(samples, arrived)
        payload = {
            "rewards": [r.reward for r in results],
            "scores": [r.score for r in results],
            "extra_logs": columns([r.extra_logs for r in results]) if results else {},
        }
        problems = [f"sample {i}: {r.error}" for i, r in enumerate(results) if r.error]
        if problems:
            payload["error"] = "; ".join(problems)
        return web.json_response(payload)

    async def cohort(request: Any) -> Any:
        assert cohorts is not None
        raw = await edge.read_body(request, options.max_body_bytes, options.read_timeout_s)
        body = await off_loop_request(
            lambda: edge.decode_json(raw)
        )  # a ProtocolError (400), as ever
        try:
            member = await off_loop_request(lambda: serve_cohort.parse_member(body, settings))
            waiting = cohorts.submit(member)  # accepted now, or refused holding nothing
        except serve_cohort.CohortBodyError as bad:
            return error(400, str(bad))
        except Overloaded as full:
            counts["overloaded"] += 1
            return error(503, f"overloaded: {full}; retry later", **{"Retry-After": "1"})
        except ValueError as bad:  # a size over max_group_size
            return error(413, str(bad))
        return web.json_response(serve_cohort.cohort_answer(await waiting))

    async def health(request: Any) -> Any:
        # Open to all for liveness; the configuration only with the token, when one is set.
        answer: dict[str, Any] = {
            "status": "ok" if service.warmup_error is None else "degraded",
            "pending": service.pending,
            "uptime_s": round(time.monotonic() - started, 1),
        }
        if not options.token or edge.authorized(request, options.token):
            backend = service.scorer.backend
            template = {"name": service.scorer.template.name, "chosen": template_choice}
            answer.update(
                warmup_error=service.warmup_error,
                backend=backend.name,
                model=backend.model,
                template=template,
            )
        return web.json_response(answer)

    async def stats(request: Any) -> Any:
        return web.json_response(
            {
                "http": dict(counts),
                "reward": dict(service.stats),
                "scorer": dict(service.scorer.stats),
                "health": service.health.rates(),
                "cohorts": _cohort_stats(cohorts),
            }
        )

    app = web.Application(client_max_size=options.max_body_bytes, middlewares=[guard])
    for path in REWARD_PATHS:
        app.router.add_post(path, reward)
    if cohorts is not None:
        app.router.add_post("/cohort", cohort)
    app.router.add_get("/health", health)
    app.router.add_get("/stats", stats)
    return app


def _cohort_stats(cohorts: CohortService | None) -> dict[str, int]:
    """``/stats``' cohorts section: the service's counts, and what it holds now."""
    if cohorts is None:
        return {}
    return {**cohorts.stats, "held": cohorts.pending, "held_bytes": cohorts.table.held_bytes}


async def run_server(
    scorer: Scorer,
    reward_config: RewardConfig,
    options: ServeOptions,
    sockets: list[socket.socket] | None = None,
    template_choice: str | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM, then drain: refuse new requests, stop accepting, let
    waiting requests finish (at most ``shutdown_timeout_s`` s), answer the rest with the
    fallback, close the judge. ``sockets`` are already bound (see
    :func:`rmr1_plugins.serve.http.bind`); by default they are bound here.
    ``template_choice`` says how the judge's template was chosen (for ``/health``)."""
    web = require("aiohttp.web", "serve")
    from rmr1_plugins.serve.http import AccessLog, ConnectionLog, bind

    sockets = bind(options.host, options.port) if sockets is None else sockets
    service = RewardService(scorer, reward_config)
    cohorts = CohortService(scorer, reward_config, service=service, max_pending=options.max_pending)
    counts: Counter[str] = Counter()
    stop = asyncio.Event()
    runner = None
    try:
        await service.start(warmup=options.warmup)
        app = create_app(
            service,
            options,
            counts,
            stopping=stop,
            cohorts=cohorts,
            template_choice=template_choice,
        )
        runner = web.AppRunner(
            app,
            access_log=logger if options.access_log else None,
            access_log_class=AccessLog.with_token(options.token),
            logger=ConnectionLog(logging.getLogger("aiohttp.server"), {}),
            keepalive_timeout=options.read_timeout_s,  # idle, and headers not yet complete
            lingering_time=0,  # a refused body is not read to its end
            auto_decompress=False,  # serve.http decodes, within the body limit
        )
        await runner.setup()
        sites = [web.SockSite(runner, sock) for sock in sockets]
        for site in sites:
            await site.start()
        port = runner.addresses[0][1]  # the real port when 0 was asked for
        host = f"[{options.host}]" if ":" in options.host else options.host
        url = f"http://{host}:{port}/get_reward"
        if options.host not in LOOPBACK and not options.token:
            logger.warning("rmr1 serve: listening on %s without --token", options.host)
        state = f" (degraded: {service.warmup_error})" if service.warmup_error else ""
        print(f"rmr1 serve: ready at {url}{state}", file=sys.stderr, flush=True)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        reporter = asyncio.create_task(_report(service, counts, options.log_every_s, cohorts))
        await stop.wait()
        reporter.cancel()
        print("rmr1 serve: stopping", file=sys.stderr, flush=True)
        _exit_after(options.shutdown_timeout_s + GRACE_S)
        for site in sites:
            await site.stop()
        deadline = loop.time() + options.shutdown_timeout_s
        while (service.pending or cohorts.pending) and loop.time() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await cohorts.aclose()
        await service.aclose()
        if runner is not None:
            await runner.cleanup()
        for sock in sockets:
            sock.close()
        scorer.close()
    print(f"rmr1 serve: stopped; {_summary(service, counts, cohorts)}", file=sys.stderr)


GRACE_S = 0.5  # after --shutdown-timeout-s: answering the rest, closing; then the exit is forced


def _exit_after(seconds: float) -> None:
    """End the process ``seconds`` from now if it has not ended by then: a judge thread that
    never returns (a hung engine call) would otherwise hold the exit, as Python joins its
    executor threads. A daemon timer, so a clean exit before it is not delayed."""

    def force() -> None:
        print(
            f"rmr1 serve: judge threads still running {seconds:g} s after the stop; exiting",
            file=sys.stderr,
            flush=True,
        )
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        os._exit(0)

    timer = threading.Timer(seconds, force)
    timer.daemon = True
    timer.start()


def _summary(
    service: RewardService, counts: Counter[str], cohorts: CohortService | None = None
) -> str:
    """One line: requests, samples (cohort members included), judge calls, fallbacks by kind
    (reference samples and cohort members pooled), judge health (every judged pair)."""
    stats = service.stats
    held = cohorts.stats if cohorts is not None else Counter()
    members = held["members"] + held["unread"]  # unreadable samples: answered, never held
    fallbacks = {kind: stats[f"fallback_{kind}"] + held[kind] for kind in FALLBACKS}
    grouped = ""
    if members:
        grouped = (
            f" ({members} in cohorts: {held['complete_cohorts']} whole, "
            f"{held['partial_cohorts']} partial, {held['late']} late, "
            f"{held['repeats']} repeats)"
        )
    return (
        f"{counts['requests']} requests, {stats['samples'] + members} samples{grouped}, "
        f"{stats['calls']} judge calls in {stats['batches']} batches "
        f"(largest {stats['largest_batch']}), {sum(fallbacks.values())} fallbacks "
        f"({fallbacks['unparsed']} unparsed, {fallbacks['error']} errors, "
        f"{fallbacks['timeout']} timeouts, {fallbacks['bad_input']} bad inputs, "
        f"{fallbacks['no_reference']} without a reference, {fallbacks['dropped']} dropped); "
        f"judge health: {format_rates(service.health.rates())}"
    )


async def _report(
    service: RewardService, counts: Counter[str], every: float, cohorts: CohortService
) -> None:
    if every <= 0:
        return
    while True:
        await asyncio.sleep(every)
        logger.info("rmr1 serve: %s", _summary(service, counts, cohorts))


def add_subcommand(subparsers: Any) -> None:
    from rmr1_plugins.cli import add_scorer_flags

    parser = subparsers.add_parser(
        "serve",
        help="HTTP reward server for OpenRLHF (--reward.remote_url http://HOST:PORT/get_reward)",
        description="An HTTP reward server speaking OpenRLHF's remote reward protocol.",
    )
    add_scorer_flags(parser, notes={"neutralize_markup": "on, as in training"})
    add_flags(parser.add_argument_group("server"), SERVER_FLAGS)
    group = parser.add_argument_group("reward (also the 'reward:' section of --config)")
    add_flags(group, REWARD_FLAGS)
    parser.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> None:
    from rmr1_plugins.cli import overrides_from_args
    from rmr1_plugins.config import ConfigError

    require("aiohttp", "serve")
    reward = overrides(args, REWARD_FLAGS)
    settings = load_reward_settings(
        args.config, reward=reward, training=True, **overrides_from_args(args)
    )
    given = overrides(args, SERVER_FLAGS)
    given["token"] = given.get("token") or os.environ.get(TOKEN_ENV) or None
    try:
        options = ServeOptions.model_validate(given)
    except ValidationError as error:
        lines = [
            f"  --{str(problem['loc'][0]).replace('_', '-')}: {problem['msg']}"
            for problem in error.errors()
        ]
        raise ConfigError("\n".join(["invalid server flags:", *lines])) from None
    from rmr1_plugins.serve.http import bind

    sockets = bind(options.host, options.port)  # before the judge loads: errors come first
    try:
        judge = settings.scorer
        print(f"rmr1 serve: template: {judge.template} ({judge.template_choice})", file=sys.stderr)
        scorer = judge.build_scorer()
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(
                run_server(scorer, settings.reward, options, sockets, judge.template_choice)
            )
    finally:
        for sock in sockets:
            sock.close()
