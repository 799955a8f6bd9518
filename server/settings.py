"""Service configuration: one validated object built from CLI flags and environment.

Every option has a flag and an environment variable of the same meaning
(`--redis-url` / `REDIS_URL`, `--data-dir` / `YITANG_DATA_DIR`, ...); the
docker-compose file and the README use the same names.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from server.media.config import IceAddress

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
    #: Join tokens expire after this many seconds unless the request says otherwise.
    token_ttl_seconds: int = 7 * 24 * 3600
    #: Node heartbeat period; presence and node entries expire after `presence_ttl_seconds`.
    heartbeat_seconds: float = 2.0
    presence_ttl_seconds: float = 10.0
    #: Per-connection Socket.IO event budget (events per second, burst).
    event_rate: float = 20.0
    event_burst: float = 40.0
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

    def __post_init__(self) -> None:
        # Stored as browsers send them in `Origin`, so comparing is exact.
        object.__setattr__(
            self, "allowed_origins", tuple(origin_of(o, strict=True) for o in self.allowed_origins)
        )
        if self.admin_attempt_limit < 1 or self.admin_attempt_window_seconds <= 0:
            raise ValueError("the admin attempt limit and window must be positive")
        if self.render_workers < 0:
            raise ValueError("render_workers must be 0 or more")
        if not 0 < self.port < 65536:
            raise ValueError(f"port out of range: {self.port}")
        if self.heartbeat_seconds <= 0 or self.presence_ttl_seconds <= self.heartbeat_seconds:
            raise ValueError("presence TTL must be longer than the heartbeat period")

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
