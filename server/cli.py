"""The `yitang` command: run a node, and administer rooms through the REST API.

    yitang serve [--host] [--port 8080] [--data-dir] [--redis-url] [--api-key] [--seed FILE]
    yitang room create (--file ROOM.json | --title ... --venue ... )
    yitang room list
    yitang token ROOM --identity ID --name NAME --role ROLE --venue VENUE
    yitang seed FILE
    yitang worker [--redis-url URL | --data-dir DIR]
    yitang archive render RECORDING_ID

Administrative commands talk to a running server (`--server`, default
http://127.0.0.1:8080) with the API key from `--api-key`, `YITANG_API_KEY`, or
the server's data directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from server import appkeys, gc_policy
from server.app import create_app
from server.credentials import API_KEY_FILE, load_token_secret
from server.http.access_log import RedactingAccessLogger
from server.loadtest.clip import DEFAULT_KEYFRAME_INTERVAL
from server.loadtest.runner import LoadTestError, LoadTestOptions, parse_resolution
from server.loadtest.runner import main_entry as loadtest_main
from server.logging_setup import LOG_FORMATS, SecretScrubber, configure_logging
from server.media import event_loop
from server.media.config import IceAddress
from server.metrics.gc_pauses import record_frozen, record_pauses
from server.recording import RenderFailed, render_and_watch
from server.recording.worker import main as worker_main
from server.seeding import apply_seed, load_seed
from server.settings import Settings, origin_of
from server.turn_credentials import TurnSettings, check_ice_url
from server.workers import Box, BoxFailed, default_worker_count

DEFAULT_SERVER = "http://127.0.0.1:8080"

logger = logging.getLogger(__name__)


class CliError(Exception):
    """A failure to report on stderr with exit status 1."""


# --- serve ---------------------------------------------------------------------------------


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name) or default


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Build validated settings from parsed flags (which default to the environment)."""
    return Settings(
        host=args.host,
        port=args.port,
        data_dir=Path(args.data_dir),
        redis_url=args.redis_url or None,
        api_key=args.api_key or None,
        token_secret=args.token_secret or None,
        public_url=args.public_url or None,
        seed_file=Path(args.seed) if args.seed else None,
        heartbeat_seconds=args.heartbeat,
        lease_ttl_seconds=args.lease_ttl,
        token_ttl_seconds=args.token_ttl,
        max_participants=args.max_participants,
        max_connections=args.max_connections or None,
        join_timeout_seconds=args.join_timeout,
        reconnect_grace_seconds=args.reconnect_grace,
        drain_seconds=args.drain_seconds,
        ice_addresses=tuple(args.ice_address or ()),
        ice_remote_allow=tuple(args.ice_remote_allow or ()),
        last_n=args.last_n or None,
        recordings_dir=Path(args.recordings_dir) if args.recordings_dir else None,
        retention_days=args.retention_days or None,
        render_workers=args.render_workers,
        allowed_origins=tuple(args.allowed_origin or ()),
        metrics_token=args.metrics_token or None,
        metrics_port=args.metrics_port or None,
        workers=args.workers,
        max_rooms_per_node=args.max_rooms_per_node or None,
        reuse_port=args.box_node is not None,
        turn=TurnSettings(
            urls=tuple(args.turn_url or ()),
            secret=args.turn_secret or None,
            ttl_seconds=args.turn_ttl,
        ),
    )


def _ice_address(text: str) -> IceAddress:
    local, _, announced = text.partition("=")
    try:
        return IceAddress(local=local.strip(), announced=announced.strip() or None)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not ADDR[=ANNOUNCED]: {text!r}") from exc


def _turn_url(text: str) -> str:
    try:
        return check_ice_url(text.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a CIDR network: {text!r}") from exc


def _origin(text: str) -> str:
    try:
        return origin_of(text, strict=True)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _env_list(name: str) -> list[str]:
    value = os.environ.get(name, "")
    return [part.strip() for part in value.split(",") if part.strip()]


async def serve(
    settings: Settings,
    *,
    announce: bool = True,
    show_links: bool = False,
    scrubber: SecretScrubber | None = None,
    log_format: str = "text",
) -> None:
    """Run a node until SIGINT/SIGTERM; seed first, and print the admin key and the seeded
    join links if `show_links` (stdout is the log of a service: secrets stay out of it).

    `announce` False (the other node processes of a box) prints neither.

    A node that fails for good (its embedded Valkey cannot be restarted) stops
    too, and raises CliError: the exit status 1 tells a process supervisor to
    restart it.
    """
    record_pauses()
    app = create_app(settings)
    readiness = app[appkeys.READINESS]
    # The access log must never show a join token (`/join?token=`) or a file access token.
    runner = web.AppRunner(app, handle_signals=False, access_log_class=RedactingAccessLogger)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, reuse_port=settings.reuse_port)
    await site.start()

    def say(line: str) -> None:
        # A person reads the banner in text mode; a log collector reads JSON lines only.
        if log_format == "json":
            logger.info("%s", line.strip(), extra={"event": "started"})
        else:
            print(line, flush=True)

    try:
        catalog = app[appkeys.CATALOG]
        if scrubber is not None:
            secret = load_token_secret(settings.data_dir, settings.token_secret)
            scrubber.register(
                app[appkeys.API_KEY], secret, settings.metrics_token, settings.turn.secret
            )
        if announce:
            say(f"Yitang 议堂 is running at {settings.base_url}")
            if show_links:
                say(f"Admin API key: {app[appkeys.API_KEY]}")
            else:
                key_file = settings.data_dir / API_KEY_FILE
                where = "as configured" if settings.api_key else f"in {key_file}"
                say(f"Admin API key: {where} (--show-links prints it)")
        if settings.seed_file is not None:
            seed = load_seed(settings.seed_file)
            links = await apply_seed(catalog, seed, settings.base_url, settings.token_ttl_seconds)
            say(f"Seeded session {seed.room.id}: {seed.room.title}")
            for invitee, url in links:
                shown = url if show_links else "(join link: --show-links, or `yitang token`)"
                say(f"  {invitee.role.value:8} {invitee.venue:12} {invitee.name}: {shown}")
        # Started: what exists now lives as long as the process (server/gc_policy.py).
        gc_policy.settle_after_startup()
        record_frozen()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        waits = {asyncio.create_task(stop.wait()), asyncio.create_task(readiness.wait_failed())}
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for waiting in waits:
            waiting.cancel()
    finally:
        try:
            await runner.cleanup()
        except Exception:
            if readiness.failure is None:
                raise
            # Expected after a failure: what needs the lost Redis fails on the way out too.
            logger.warning("shutdown after the failure was incomplete", exc_info=True)
    if readiness.failure is not None:
        raise CliError(f"the node failed: {readiness.failure}")


def _loadtest_options(args: argparse.Namespace) -> LoadTestOptions:
    width, height = parse_resolution(args.resolution)
    return LoadTestOptions(
        url=args.url or args.server,
        api_key=_api_key(args),
        publishers=args.publishers,
        subscribers=args.subscribers,
        duration=args.duration,
        width=width,
        height=height,
        fps=args.fps,
        bitrate_kbps=args.bitrate,
        codec=args.codec,
        keyframe_interval=args.keyframe_interval,
        speaker_switch=args.speaker_switch,
        warmup=args.warmup,
        processes=args.processes,
        latency_probes=args.latency_probes,
        ice_addresses=tuple(args.ice_address) if args.ice_address else None,
        relay_only=args.relay,
    )


def _serve_argv(argv: list[str] | None) -> list[str]:
    """The flags given to `serve` (what each node process of the box is started with)."""
    given = list(sys.argv[1:] if argv is None else argv)
    return given[given.index("serve") + 1 :]


async def serve_box(settings: Settings, serve_argv: list[str], verbose: bool) -> None:
    """Run `settings.workers` node processes behind one port until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"Yitang 议堂: {settings.workers} node processes on port {settings.port}", flush=True)
    await Box(settings, serve_argv, verbose=verbose).run(stop)


# --- REST client for the admin commands --------------------------------------------------------


def _api_key(args: argparse.Namespace) -> str:
    if args.api_key:
        return str(args.api_key)
    path = Path(args.data_dir) / API_KEY_FILE
    if path.exists():
        return path.read_text().strip()
    raise CliError(f"no API key: pass --api-key, set YITANG_API_KEY, or run where {path} exists")


async def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {_api_key(args)}"}
    url = args.server.rstrip("/") + path
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
            session.request(method, url, json=body, headers=headers) as response,
        ):
            payload = await response.json() if response.content_type == "application/json" else None
            if response.status >= 400:
                error = (payload or {}).get("error", {})
                message = error.get("message", response.reason)
                raise CliError(f"{response.status} {error.get('code', '')}: {message}")
            return payload
    except aiohttp.ClientError as exc:
        raise CliError(f"cannot reach {args.server}: {exc}") from exc


def _parse_venue(text: str) -> dict[str, Any]:
    parts = text.split(":")
    if len(parts) not in (3, 4) or (len(parts) == 4 and parts[3] != "main"):
        raise argparse.ArgumentTypeError(f"venue must be ID:NAME:LEVEL[:main], got {text!r}")
    return {"id": parts[0], "name": parts[1], "level": parts[2], "main": len(parts) == 4}


def _parse_agenda(text: str) -> dict[str, Any]:
    title, _, speakers = text.partition("=")
    return {"title": title, "planned_speakers": [s for s in speakers.split(",") if s]}


async def room_create(args: argparse.Namespace) -> None:
    """Create a room from a JSON file or from flags; prints the created room."""
    if args.file:
        body = json.loads(await asyncio.to_thread(Path(args.file).read_text, encoding="utf-8"))
    else:
        if not args.title or not args.venue:
            raise CliError("give --file, or at least --title and one --venue")
        body = {
            "title": args.title,
            "topic": args.topic or "",
            "scheduled_start": args.start or datetime.now().astimezone().isoformat(),
            "venues": args.venue,
            "agenda": args.agenda or [],
        }
        if args.id:
            body["id"] = args.id
        if args.lobby:
            body["lobby"] = True
    room = await _call(args, "POST", "/api/rooms", body)
    print(json.dumps(room, ensure_ascii=False, indent=2))


async def room_list(args: argparse.Namespace) -> None:
    """Print one line per room."""
    listing = await _call(args, "GET", "/api/rooms")
    for row in listing["rooms"]:
        room, live = row["room"], row["live"]
        print(
            f"{room['id']}\t{live['status']}\t{row['participant_count']} present\t"
            f"{room['scheduled_start']}\t{room['title']}"
        )


async def token(args: argparse.Namespace) -> None:
    """Issue a join token; prints the token and the join link."""
    body = {
        "identity": args.identity,
        "name": args.name or args.identity,
        "role": args.role,
        "venue": args.venue,
    }
    if args.ttl:
        body["ttl_seconds"] = args.ttl
    if args.replace:
        body["replace"] = True
    try:
        issued = await _call(args, "POST", f"/api/rooms/{args.room}/tokens", body)
    except CliError as exc:
        if "identity_taken" in str(exc):
            raise CliError(f"{exc} (use --replace)") from exc
        raise
    print(issued["token"])
    print(issued["url"])


async def seed(args: argparse.Namespace) -> None:
    """Create the seed file's room (unless present) and print a join link per participant."""
    seed_file = load_seed(Path(args.file))
    body = seed_file.room.model_dump(mode="json")
    try:
        await _call(args, "POST", "/api/rooms", body)
        print(f"created {seed_file.room.id}")
    except CliError as exc:
        if "room_exists" not in str(exc):
            raise
        print(f"{seed_file.room.id} already exists")
    for invitee in seed_file.participants:
        issued = await _call(
            args,
            "POST",
            f"/api/rooms/{seed_file.room.id}/tokens",
            # The seed file is the authority on its participants.
            {**invitee.model_dump(mode="json"), "replace": True},
        )
        print(f"  {invitee.role.value:8} {invitee.venue:12} {invitee.name}: {issued['url']}")


async def archive_render(args: argparse.Namespace) -> None:
    """Queue a recording's combined video and draw a progress bar until it is done."""
    status = await render_and_watch(
        args.server, _api_key(args), args.recording_id, timeout=args.timeout
    )
    print(f"{args.recording_id}: {status.state}")


# --- argument parsing ------------------------------------------------------------------------


def _admin_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server", default=_env("YITANG_SERVER", DEFAULT_SERVER), help="server URL"
    )
    parser.add_argument("--api-key", default=_env("YITANG_API_KEY"), help="admin API key")
    parser.add_argument(
        "--data-dir", default=_env("YITANG_DATA_DIR", "data"), help="read the API key from here"
    )


def _log_format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=_env("YITANG_LOG_FORMAT", "text"),
        help="text (default) or json: one JSON object per line with time, level, node, "
        "room, identity, event and message",
    )


def build_parser() -> argparse.ArgumentParser:
    """The whole command-line interface."""
    parser = argparse.ArgumentParser(
        prog="yitang", description="Yitang (议堂) consultation service"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    serve_parser = commands.add_parser("serve", help="run a server node")
    serve_parser.add_argument("--host", default=_env("YITANG_HOST", "127.0.0.1"))
    serve_parser.add_argument("--port", type=int, default=int(_env("YITANG_PORT", "8080") or 8080))
    serve_parser.add_argument("--data-dir", default=_env("YITANG_DATA_DIR", "data"))
    serve_parser.add_argument(
        "--redis-url", default=_env("REDIS_URL"), help="external Redis; default: embedded Valkey"
    )
    serve_parser.add_argument("--api-key", default=_env("YITANG_API_KEY"))
    serve_parser.add_argument(
        "--metrics-token",
        default=_env("YITANG_METRICS_TOKEN"),
        help="bearer token that may read /metrics and nothing else (the API key always may)",
    )
    serve_parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(_env("YITANG_METRICS_PORT", "0") or 0),
        help="also serve /metrics alone on this port (node k of --workers N: this + k)",
    )
    serve_parser.add_argument(
        "--show-links",
        action="store_true",
        default=(_env("YITANG_SHOW_LINKS") or "").lower() in ("1", "true", "yes"),
        help="print the admin API key and the seeded join links at start (a demo at a "
        "terminal; never where stdout is a log)",
    )
    _log_format_option(serve_parser)
    serve_parser.add_argument("--token-secret", default=_env("YITANG_TOKEN_SECRET"))
    serve_parser.add_argument(
        "--public-url", default=_env("YITANG_PUBLIC_URL"), help="base of join links"
    )
    serve_parser.add_argument(
        "--seed", default=_env("YITANG_SEED"), help="seed file to load at start"
    )
    serve_parser.add_argument(
        "--allowed-origin",
        action="append",
        type=_origin,
        default=[_origin(o) for o in _env_list("YITANG_ALLOWED_ORIGINS")] or None,
        metavar="ORIGIN",
        help="public origin (scheme://host[:port]) of the deployment whose pages may open "
        "Socket.IO connections (repeatable; default: the origin of --public-url)",
    )
    serve_parser.add_argument(
        "--heartbeat",
        type=float,
        default=float(_env("YITANG_HEARTBEAT", "2") or 2),
        help="node heartbeat period in seconds",
    )
    serve_parser.add_argument(
        "--lease-ttl",
        type=float,
        default=float(_env("YITANG_LEASE_TTL", "6") or 6),
        help="seconds after which a silent node's rooms move and its participants are forgotten",
    )
    serve_parser.add_argument(
        "--token-ttl",
        type=int,
        default=int(_env("YITANG_TOKEN_TTL", str(12 * 3600)) or 12 * 3600),
        help="default lifetime of join tokens in seconds (12 h)",
    )
    serve_parser.add_argument(
        "--max-participants",
        type=int,
        default=int(_env("YITANG_MAX_PARTICIPANTS", "500") or 500),
        help="participants in one session at once (hosts always get in)",
    )
    serve_parser.add_argument(
        "--max-connections",
        type=int,
        default=int(_env("YITANG_MAX_CONNECTIONS", "0") or 0),
        help="Socket.IO connections this node holds at once (0: a quarter of the fd limit)",
    )
    serve_parser.add_argument(
        "--join-timeout",
        type=float,
        default=float(_env("YITANG_JOIN_TIMEOUT", "15") or 15),
        help="close connections that have not joined a room within this many seconds",
    )
    serve_parser.add_argument(
        "--reconnect-grace",
        type=float,
        default=float(_env("YITANG_RECONNECT_GRACE", "20") or 20),
        help="seconds a participant whose connection dropped is shown reconnecting before "
        "it counts as a leave (0: at once)",
    )
    serve_parser.add_argument(
        "--drain-seconds",
        type=float,
        default=float(_env("YITANG_DRAIN_SECONDS", "10") or 10),
        help="on SIGTERM, hand rooms over and send sockets elsewhere within this long",
    )
    serve_parser.add_argument(
        "--workers",
        type=int,
        default=int(_env("YITANG_WORKERS", "0") or 0) or default_worker_count(),
        help="node processes on this box behind one port (default: one per core)",
    )
    serve_parser.add_argument(
        "--max-rooms-per-node",
        type=int,
        default=int(_env("YITANG_MAX_ROOMS_PER_NODE", "0") or 0),
        help="rooms one node process owns at most; others go to other nodes (0: no cap)",
    )
    # Set by `--workers N` for each node process it starts (server/workers.py): the first
    # seeds and prints the key and links, the others (and restarted ones) stay quiet.
    serve_parser.add_argument("--box-node", choices=("first", "other"), help=argparse.SUPPRESS)
    serve_parser.add_argument(
        "--turn-url",
        action="append",
        type=_turn_url,
        default=[_turn_url(u) for u in _env_list("YITANG_TURN_URLS")] or None,
        metavar="URL",
        help="a TURN (or STUN) server handed to participants, e.g. "
        "turn:turn.example.org:3478?transport=udp, turns:turn.example.org:443?transport=tcp "
        "(repeatable)",
    )
    serve_parser.add_argument(
        "--turn-secret",
        default=_env("YITANG_TURN_SECRET"),
        help="the secret shared with coturn (static-auth-secret) for short-lived credentials",
    )
    serve_parser.add_argument(
        "--turn-ttl",
        type=int,
        default=int(_env("YITANG_TURN_TTL", str(4 * 3600)) or 4 * 3600),
        help="seconds a participant's TURN credential lasts (clients renew it before)",
    )
    serve_parser.add_argument(
        "--ice-address",
        action="append",
        type=_ice_address,
        default=[_ice_address(a) for a in _env_list("YITANG_ICE_ADDRESS")] or None,
        metavar="ADDR[=ANNOUNCED]",
        help="local address to gather ICE candidates on (repeatable)",
    )
    serve_parser.add_argument(
        "--ice-remote-allow",
        action="append",
        type=_network,
        default=[_network(n) for n in _env_list("YITANG_ICE_REMOTE_ALLOW")] or None,
        metavar="CIDR",
        help="accept remote ICE candidates only from these networks (repeatable)",
    )

    serve_parser.add_argument(
        "--last-n",
        type=int,
        default=int(_env("YITANG_LAST_N", "0") or 0),
        help="forward video of at most N recent active speakers besides floor and host (0: all)",
    )

    serve_parser.add_argument(
        "--recordings-dir",
        default=_env("YITANG_RECORDINGS_DIR"),
        help="the archive folder (default: DATA_DIR/recordings)",
    )
    serve_parser.add_argument(
        "--retention-days",
        type=float,
        default=float(_env("YITANG_RETENTION_DAYS", "0") or 0),
        help="delete recordings older than this many days (0: keep)",
    )
    serve_parser.add_argument(
        "--render-workers",
        type=int,
        default=int(_env("YITANG_RENDER_WORKERS", "1") or 1),
        help="render worker processes to start beside the server (0: run `yitang worker`)",
    )

    load_parser = commands.add_parser(
        "loadtest", help="headless participants against a server: fps, loss, freezes, CPU"
    )
    load_parser.add_argument("url", nargs="?", help="the server (default: --server)")
    _admin_options(load_parser)
    load_parser.add_argument("--publishers", type=int, default=1, help="members who publish")
    load_parser.add_argument("--subscribers", type=int, default=4, help="observers who watch")
    load_parser.add_argument("--duration", type=float, default=30.0, help="seconds measured")
    load_parser.add_argument("--resolution", default="640x480", help="WIDTHxHEIGHT")
    load_parser.add_argument("--fps", type=int, default=30)
    load_parser.add_argument("--bitrate", type=int, default=1500, help="video kbit/s")
    load_parser.add_argument("--codec", choices=("vp8", "h264"), default="vp8")
    load_parser.add_argument(
        "--keyframe-interval",
        type=float,
        default=DEFAULT_KEYFRAME_INTERVAL,
        metavar="SECONDS",
        help="a publisher's keyframe comes this often unasked; a request (PLI) is answered "
        "at the next frame, as a browser's encoder does (1: the README's earlier load)",
    )
    load_parser.add_argument(
        "--speaker-switch",
        type=float,
        metavar="SECONDS",
        help="the host gives the floor to the next publisher this often",
    )
    load_parser.add_argument(
        "--warmup",
        type=float,
        default=3.0,
        metavar="SECONDS",
        help="seconds between the last join and the measurement (the joins' renegotiations "
        "settle, the links' levels recover)",
    )
    load_parser.add_argument(
        "--processes", type=int, help="client processes (default: one per core)"
    )
    load_parser.add_argument(
        "--latency-probes",
        type=int,
        default=2,
        metavar="N",
        help="observers that time sampled video packets, in a process of their own at "
        "real-time priority where allowed (0: none, one process fewer)",
    )
    load_parser.add_argument(
        "--ice-address",
        action="append",
        help="local address the clients gather ICE on (default: 127.0.0.1 for a local URL)",
    )
    load_parser.add_argument(
        "--relay",
        action="store_true",
        help="media only through the TURN relay the server hands out",
    )
    load_parser.add_argument("--json", action="store_true", help="print the report as JSON")

    worker_parser = commands.add_parser("worker", help="run a combined-video render worker")
    worker_parser.add_argument("--redis-url", default=_env("REDIS_URL"))
    worker_parser.add_argument("--data-dir", default=_env("YITANG_DATA_DIR", "data"))
    worker_parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    _log_format_option(worker_parser)

    archive_parser = commands.add_parser("archive", help="work with recorded sessions")
    archive_commands = archive_parser.add_subparsers(dest="archive_command", required=True)
    render_parser = archive_commands.add_parser(
        "render", help="(re)make a recording's combined video and show its progress"
    )
    _admin_options(render_parser)
    render_parser.add_argument("recording_id")
    render_parser.add_argument("--timeout", type=float, help="give up after this many seconds")

    room_parser = commands.add_parser("room", help="create and list rooms")
    room_commands = room_parser.add_subparsers(dest="room_command", required=True)
    create_parser = room_commands.add_parser("create", help="create a consultation room")
    _admin_options(create_parser)
    create_parser.add_argument("--file", help="room definition JSON (see seeds/)")
    create_parser.add_argument("--id")
    create_parser.add_argument("--title")
    create_parser.add_argument("--topic")
    create_parser.add_argument("--start", help="ISO 8601 start time with offset")
    create_parser.add_argument(
        "--lobby", action="store_true", help="newcomers wait until a host admits them"
    )
    create_parser.add_argument(
        "--venue", action="append", type=_parse_venue, metavar="ID:NAME:LEVEL[:main]"
    )
    create_parser.add_argument(
        "--agenda", action="append", type=_parse_agenda, metavar="TITLE[=SPEAKER,...]"
    )
    list_parser = room_commands.add_parser("list", help="list rooms")
    _admin_options(list_parser)

    token_parser = commands.add_parser("token", help="issue a join token and link")
    _admin_options(token_parser)
    token_parser.add_argument("room")
    token_parser.add_argument("--identity", required=True)
    token_parser.add_argument("--name")
    token_parser.add_argument(
        "--role",
        required=True,
        choices=["host", "cohost", "moderator", "member", "guest", "observer"],
    )
    token_parser.add_argument("--venue", required=True)
    token_parser.add_argument("--ttl", type=int, help="validity in seconds")
    token_parser.add_argument(
        "--replace",
        action="store_true",
        help="change the role or venue of an identity invited before (refused otherwise)",
    )

    seed_parser = commands.add_parser("seed", help="load a seed file into a running server")
    _admin_options(seed_parser)
    seed_parser.add_argument("file")
    return parser


def _run_node(main: Coroutine[Any, Any, None]) -> None:
    """Run a node until it returns, on the loop whose wait reads publishers' sockets
    (server/media/event_loop.py)."""
    with asyncio.Runner(loop_factory=event_loop.new_event_loop) as runner:
        runner.run(main)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `yitang` console script."""
    args = build_parser().parse_args(argv)
    try:
        scrubber = configure_logging(getattr(args, "log_format", "text"), verbose=args.verbose)
    except ValueError as exc:  # YITANG_LOG_FORMAT is not checked by argparse's choices
        print(f"yitang: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "serve":
            settings = settings_from_args(args)
            # Render workers it starts log the same way (they read the environment).
            os.environ["YITANG_LOG_FORMAT"] = args.log_format
            with contextlib.suppress(KeyboardInterrupt):
                if settings.workers > 1:
                    asyncio.run(serve_box(settings, _serve_argv(argv), args.verbose))
                else:
                    _run_node(
                        serve(
                            settings,
                            announce=args.box_node != "other",
                            show_links=args.show_links,
                            scrubber=scrubber,
                            log_format=args.log_format,
                        )
                    )
        elif args.command == "room":
            asyncio.run(room_create(args) if args.room_command == "create" else room_list(args))
        elif args.command == "token":
            asyncio.run(token(args))
        elif args.command == "seed":
            asyncio.run(seed(args))
        elif args.command == "worker":
            worker_args = ["--data-dir", args.data_dir, *(["--burst"] if args.burst else [])]
            return worker_main(
                [*worker_args, *(["--redis-url", args.redis_url] if args.redis_url else [])]
            )
        elif args.command == "loadtest":
            for chatty in ("aioice", "aiortc"):  # a log line per ICE check drowns the report
                logging.getLogger(chatty).setLevel(logging.WARNING)
            return loadtest_main(_loadtest_options(args), as_json=args.json)
        elif args.command == "archive":
            asyncio.run(archive_render(args))
    except (CliError, BoxFailed, LoadTestError, RenderFailed, ValueError, OSError) as exc:
        print(f"yitang: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
