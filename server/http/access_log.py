"""The HTTP access log, without the secrets that URLs carry.

Join links are `/join?token=<JWT>` and recording files are fetched with
`?access=<signature>`: aiohttp's own access log writes the whole request line
(and the Referer), so anyone who can read the logs could join as the invitee or
download the recording. This logger writes the same line with the value of
every secret-looking query parameter replaced: by its name (`token`, `access`,
Engine.IO's `sid`, which is all it takes to poll someone's Socket.IO session,
...) or by its value (anything shaped like a JWT, even inside another
parameter, such as a `next=` link).
"""

from __future__ import annotations

import logging
import urllib.parse
from datetime import datetime, timedelta

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from server.logging_setup import JWT_PATTERN

#: Query parameters whose values never reach a log (compared case-insensitively).
SECRET_PARAMETERS = frozenset(
    {
        "token",
        "access",
        "sig",
        "signature",
        "key",
        "api_key",
        "apikey",
        "secret",
        "password",
        "passwd",
        "auth",
        "jwt",
        "access_token",
        "id_token",
        "credential",
        "credentials",
        # Engine.IO's session id: a polling client is known by it alone.
        "sid",
    }
)
REDACTED = "[redacted]"


def redact_url(url: str) -> str:
    """`url` (absolute, or a path with a query) with the values of secret parameters replaced.

    Everything else stays exactly as received, so the log still shows what was asked.
    """
    head, question, rest = url.partition("?")
    if not question:
        return url
    query, hash_sign, fragment = rest.partition("#")
    parts = []
    for part in query.split("&"):
        name, equals, value = part.partition("=")
        secret_name = urllib.parse.unquote_plus(name).strip().lower() in SECRET_PARAMETERS
        if equals and (secret_name or JWT_PATTERN.search(urllib.parse.unquote_plus(value))):
            part = f"{name}={REDACTED}"
        parts.append(part)
    return f"{head}?{'&'.join(parts)}{hash_sign}{fragment}"


class RedactingAccessLogger(AbstractAccessLogger):
    """aiohttp's default access log line (plus the duration), secrets redacted.

    ``remote [start time] "METHOD target HTTP/x.y" status bytes "referer" "user agent" seconds``;
    the `log_format` aiohttp passes is ignored: the line is fixed so that
    nothing configurable can bring an unredacted URL back.
    """

    @property
    def enabled(self) -> bool:
        """Whether lines would be written at all (aiohttp skips the call otherwise)."""
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        """Write one line for a finished request that took `time` seconds."""
        started = datetime.now().astimezone() - timedelta(seconds=time)
        version = request.version
        self.logger.info(
            '%s [%s] "%s %s HTTP/%d.%d" %d %d "%s" "%s" %.6f',
            request.remote or "-",
            started.strftime("%d/%b/%Y:%H:%M:%S %z"),
            request.method,
            redact_url(request.raw_path),
            version.major,
            version.minor,
            response.status,
            response.body_length,
            redact_url(request.headers.get("Referer", "-")),
            request.headers.get("User-Agent", "-"),
            time,
        )
