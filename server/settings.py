"""Service configuration: one validated object built from CLI flags and environment.

Every option has a flag and an environment variable of the same meaning
(`--redis-url` / `REDIS_URL`, `--data-dir` / `YITANG_DATA_DIR`, ...); the
docker-compose file and the README use the same names.
"""

from __future__ import annotations

import ipaddress
import resource
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from server.media.config import IceAddress
from server.precheck.config import PrecheckSettings
from server.turn_credentials import TurnSettings

#: Environment variables read by :func:`settings_from_env`, with their flag.
ENV_VARS: dict[str, str] = {
    "YITANG_HOST": "--host",
    "YITANG_PORT": "--port",
    "YITANG_DATA_DIR": "--data-dir",
    "REDIS_URL": "--redis-url",
    "YITANG_API_KEY": "--api-key",
    "YITANG_TOKEN_SECRET": "--token-secret",
    "YITANG_PUBLIC_URL": "--public-url",
    "YITANG_ALLOWED_ORIGINS": "--allowed-origin",
    "YITANG_SEED": "--seed",
    "YITANG_ICE_ADDRESS": "--ice-address",
    "YITANG_ICE_REMOTE_ALLOW": "--ice-remote-allow",
    "YITANG_LAST_N": "--last-n",
    "YITANG_RECORDINGS_DIR": "--recordings-dir",
    "YITANG_RETENTION_DAYS": "--retention-days",
    "YITANG_RENDER_WORKERS": "--render-workers",
    "YITANG_TOKEN_TTL": "--token-ttl",
    "YITANG_MAX_PARTICIPANTS": "--max-participants",
    "YITANG_MAX_CONNECTIONS": "--max-connections",
    "YITANG_HEARTBEAT": "--heartbeat",
    "YITANG_LEASE_TTL": "--lease-ttl",
    "YITANG_JOIN_TIMEOUT": "--join-timeout",
    "YITANG_DRAIN_SECONDS": "--drain-seconds",
    "YITANG_METRICS_TOKEN": "--metrics-token",
    "YITANG_METRICS_PORT": "--metrics-port",
    "YITANG_LOG_FORMAT": "--log-format",
    "YITANG_SHOW_LINKS": "--show-links",
    "YITANG_WORKERS": "--workers",
    "YITANG_TURN_URLS": "--turn-url",
    "YITANG_TURN_SECRET": "--turn-secret",
    "YITANG_TURN_TTL": "--turn-ttl",
    "YITANG_MAX_ROOMS_PER_NODE": "--max-rooms-per-node",
}


@dataclass(frozen=True)
class Settings:
    """Everything a server process needs to start; see `yitang serve --help`."""

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    #: External Redis; None starts the embedded server in `data_dir`.
    redis_url: str | None = None
    #: Admin API key; None reads (or creates on first start) `data_dir/api-key`.
    api_key: str | None = None
    #: Join-token signing key; None reads (or creates) `data_dir/token-secret`.
    token_secret: str | None = None
    #: Base URL put into join links; None derives it from host and port.
    public_url: str | None = None
    seed_file: Path | None = None
    #: Join tokens expire after this many seconds unless the request says otherwise
    #: (a session day, not a week: a leaked link stops working by the next day).
    token_ttl_seconds: int = 12 * 3600
    #: Node heartbeat period; a node's heartbeat and its rooms' leases expire after
    #: `lease_ttl_seconds` without one (then its rooms move to other nodes).
    heartbeat_seconds: float = 2.0
    lease_ttl_seconds: float = 6.0
    #: Per-identity and per-connection Socket.IO event budget (events per second, burst).
    event_rate: float = 20.0
    event_burst: float = 40.0
    #: Per-identity chat budget (messages per second, burst); the room's is ten times that.
    chat_rate: float = 1.0
    chat_burst: float = 5.0
    #: Participants in one session at once (`room_full` beyond; hosts always get in).
    max_participants: int = 500
    #: Socket.IO connections one node holds at once (`server_full` beyond); None: a
    #: quarter of the process's file descriptor limit.
    max_connections: int | None = None
    #: A connection that has not joined a room this long after connecting is closed.
    join_timeout_seconds: float = 15.0
    #: A participant whose socket dropped is shown "reconnecting" this long before it
    #: counts as a leave (0: at once).
    reconnect_grace_seconds: float = 20.0
    #: On SIGTERM, rooms are handed over and sockets sent elsewhere within this long.
    drain_seconds: float = 10.0
    #: A room nobody is in is let go (its lease released) after this long.
    idle_room_seconds: float = 60.0
    #: Node processes `yitang serve` runs on this box behind one port (see server/workers.py).
    workers: int = 1
    #: Rooms one node owns at most (None: no cap); new rooms go to other nodes.
    max_rooms_per_node: int | None = None
    #: Bind the port with SO_REUSEPORT (set for the node processes of `--workers N`).
    reuse_port: bool = False
    #: The TURN relay handed to participants (coturn with `use-auth-secret`); see
    #: server/turn_credentials.py. No URLs: participants get no ICE servers.
    turn: TurnSettings = field(default_factory=TurnSettings)
    ice_addresses: tuple[IceAddress, ...] = ()
    ice_remote_allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    #: Video of at most this many recent active speakers is forwarded (floor and host always).
    last_n: int | None = None
    #: The archive; None is `data_dir/recordings`. Shared storage when several nodes record.
    recordings_dir: Path | None = None
    #: Recordings older than this many days are deleted; None keeps them.
    retention_days: float | None = None
    #: Render worker processes `yitang serve` starts beside itself (0: run `yitang worker`).
    render_workers: int = 1
    #: Public origins of the deployment (`scheme://host[:port]`): pages of these origins may
    #: open Socket.IO connections, and pages may connect to all of them (a client reconnects
    #: to another node after a failover). Empty: the origin of `base_url` alone.
    allowed_origins: tuple[str, ...] = ()
    #: This many API-key failures from one address within the window lock that address out
    #: of the admin API for the window.
    admin_attempt_limit: int = 10
    admin_attempt_window_seconds: float = 60.0
    #: Bearer token that may read `/metrics` (and nothing else); the API key always may.
    metrics_token: str | None = None
    #: A port of this node's own serving `/metrics` only (the main port too serves it). With
    #: `--workers N` the node processes share the main port, so a scrape there reaches any
    #: one of them: node k of the box serves its metrics on `metrics_port + k`.
    metrics_port: int | None = None
    #: How often RTCP receiver reports and transport counters are sampled for `/metrics`.
    metrics_sample_seconds: float = 5.0
    #: How often the control room (`/control`) is sent a snapshot while an operator watches.
    control_interval_seconds: float = 2.0
    #: A participant's packet loss (0..1) above which the control room raises an alert.
    control_loss_alert: float = 0.05
    #: The pre-session connection check: probe bounds and targets (server/precheck/config.py).
    precheck: PrecheckSettings = field(default_factory=PrecheckSettings)

    def __post_init__(self) -> None:
        # Stored as browsers send them in `Origin`, so comparing is exact.
        object.__setattr__(
            self, "allowed_origins", tuple(origin_of(o, strict=True) for o in self.allowed_origins)
        )
        if self.admin_attempt_limit < 1 or self.admin_attempt_window_seconds <= 0:
            raise ValueError("the admin attempt limit and window must be positive")
        if self.render_workers < 0:
            raise ValueError("render_workers must be 0 or more")
        if self.workers < 1 or (self.max_rooms_per_node or 1) < 1:
            raise ValueError("workers and max_rooms_per_node must be positive")
        if not 0 < self.port < 65536:
            raise ValueError(f"port out of range: {self.port}")
        if self.heartbeat_seconds <= 0 or self.lease_ttl_seconds <= 2 * self.heartbeat_seconds:
            raise ValueError("the lease TTL must be longer than two heartbeat periods")
        if self.max_participants < 1 or (self.max_connections or 1) < 1:
            raise ValueError("max_participants and max_connections must be positive")
        if self.metrics_port is not None and not 0 < self.metrics_port < 65536:
            raise ValueError(f"metrics port out of range: {self.metrics_port}")
        if self.metrics_sample_seconds <= 0:
            raise ValueError("metrics_sample_seconds must be positive")
        if self.metrics_token is not None and len(self.metrics_token) < 16:
            raise ValueError("the metrics token must be at least 16 characters")
        if not 0 <= self.reconnect_grace_seconds <= 600:
            raise ValueError("reconnect_grace_seconds must be between 0 and 600")
        if self.token_ttl_seconds < 60:
            raise ValueError("token_ttl_seconds must be at least a minute")

    @property
    def connection_limit(self) -> int:
        """The per-node connection cap in force (see `max_connections`)."""
        if self.max_connections is not None:
            return self.max_connections
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return max(64, soft // 4)

    @property
    def archive_dir(self) -> Path:
        """Where recordings are kept."""
        return self.recordings_dir or self.data_dir / "recordings"

    @property
    def base_url(self) -> str:
        """The URL browsers use to reach this service (join links start with it)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def public_origins(self) -> tuple[str, ...]:
        """The origins browsers reach this deployment at: `allowed_origins`, or base_url's."""
        return self.allowed_origins or (origin_of(self.base_url),)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str, strict: bool = False) -> str:
    """The origin of an http(s) URL as browsers write it (`https://host`, `http://host:8080`).

    Scheme and host are lower-cased and a default port is dropped, as in an
    `Origin` header. `strict` refuses anything beyond an origin (path, query,
    user), so a mistyped `--allowed-origin` is an error and not a silent mismatch.
    """
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not an http(s) origin: {url!r}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"not an http(s) origin: {url!r}")
    extra = parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc
    if strict and extra:
        raise ValueError(f"an origin is scheme://host[:port], nothing more: {url!r}")
    host = parts.hostname  # lower-cased by urlsplit
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    return f"{scheme}://{netloc}"
