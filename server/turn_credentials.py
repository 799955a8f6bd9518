"""ICE servers handed to each participant: TURN with short-lived credentials.

A county venue behind a government firewall often has UDP blocked; it reaches
the SFU only through a TURN relay over TCP or TLS (port 443). Yitang does not
run the relay (coturn does, `docker-compose.yml`); it hands each participant
credentials in coturn's REST form (`use-auth-secret`, the "TURN REST API"
draft that coturn, Janus, LiveKit and Jitsi deployments share):

    username   = "<unix expiry>:<identity>"
    credential = base64(HMAC-SHA1(shared secret, username))

coturn recomputes the HMAC with the same secret and refuses an expired
username, so nothing is stored and a leaked credential lapses by itself. The
join ack carries the list (`ice_servers`, the browser's `RTCIceServer` shape);
a client asks for fresh ones (`refresh_ice_servers`) before they expire.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

#: URL schemes of RFC 7064/7065.
SCHEMES = ("stun", "turn", "turns")
MAX_URL_LENGTH = 256


def check_ice_url(url: str) -> str:
    """A `turn:`/`turns:`/`stun:` URL, or ValueError saying what is wrong."""
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"ICE server URL longer than {MAX_URL_LENGTH} characters")
    scheme, _, rest = url.partition(":")
    if scheme not in SCHEMES or not rest or rest.startswith("/"):
        raise ValueError(f"not a stun:, turn: or turns: URL: {url!r}")
    host_port, _, query = rest.partition("?")
    if not host_port or any(c.isspace() for c in url):
        raise ValueError(f"not a stun:, turn: or turns: URL: {url!r}")
    if query and urllib.parse.parse_qs(query).get("transport", ["udp"])[0] not in ("udp", "tcp"):
        raise ValueError(f"transport must be udp or tcp: {url!r}")
    return url


@dataclass(frozen=True)
class TurnSettings:
    """The deployment's TURN relay: its URLs and the secret it shares with coturn."""

    urls: tuple[str, ...] = ()
    secret: str | None = None
    #: Credentials last this long (a session's morning; clients refresh them before).
    ttl_seconds: int = 4 * 3600

    def __post_init__(self) -> None:
        for url in self.urls:
            check_ice_url(url)
        needs_secret = any(not url.startswith("stun:") for url in self.urls)
        if needs_secret and not self.secret:
            raise ValueError("a TURN URL needs --turn-secret (coturn's static-auth-secret)")
        if not 60 <= self.ttl_seconds <= 7 * 24 * 3600:
            raise ValueError("the TURN credential lifetime must be between a minute and a week")


def turn_credential(secret: str, identity: str, expires_at: int) -> tuple[str, str]:
    """coturn's REST-API username and password for `identity`, valid until `expires_at`."""
    username = f"{expires_at}:{identity}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers(
    settings: TurnSettings, identity: str, now: float | None = None
) -> tuple[list[dict[str, Any]], int | None]:
    """The `RTCIceServer` list for one participant, and when its credential expires
    (an empty list and None without a relay configured)."""
    stun = [url for url in settings.urls if url.startswith("stun:")]
    turn = [url for url in settings.urls if not url.startswith("stun:")]
    servers: list[dict[str, Any]] = [{"urls": stun}] if stun else []
    if not turn or not settings.secret:
        return servers, None
    expires_at = int(time.time() if now is None else now) + settings.ttl_seconds
    username, credential = turn_credential(settings.secret, identity, expires_at)
    servers.append({"urls": turn, "username": username, "credential": credential})
    return servers, expires_at
