"""Logging of a `yitang` process: the plain text format, or one JSON object per line.

`--log-format json` writes each record as one line of JSON with `time` (UTC,
ISO 8601), `level`, `logger`, `node`, `room` and `identity` where the work has
them (`server.log_context`), `event` when the call passes `extra={"event": ...}`,
`message`, and `exception` with the traceback. The text format is the one the
server always had.

Whatever the format, secrets are cut out of every line before it is written:
anything shaped like a JWT (join tokens) and every secret the process has
registered (the admin API key, the token-signing secret, the metrics token).
The code does not log them in the first place (the test suite checks every
line it produces); this is the second line of defence, for a secret inside an
exception message from a library.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from server import log_context

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "[redacted]"

#: A JSON Web Token: three base64url parts, the first a JSON header (`{"` is `eyJ`).
JWT_PATTERN = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
#: Secrets shorter than this are not registered (they would cut ordinary words out of lines).
MIN_SECRET_LENGTH = 12


class SecretScrubber:
    """Replaces JWTs and registered secret strings in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.register(*secrets)

    def register(self, *secrets: str | None) -> None:
        """Cut these values out of every line from now on (None and short values ignored)."""
        added = {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}
        if added - self._secrets:
            self._secrets |= added
            # Longest first, so a secret containing another is cut whole.
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(s) for s in ordered))

    def scrub(self, text: str) -> str:
        """`text` with every secret replaced by `[redacted]`."""
        text = JWT_PATTERN.sub(REDACTED, text)
        if self._pattern is not None:
            text = self._pattern.sub(REDACTED, text)
        return text


class ScrubbingTextFormatter(logging.Formatter):
    """The text format, secrets cut out."""

    def __init__(self, scrubber: SecretScrubber) -> None:
        super().__init__(TEXT_FORMAT)
        self.scrubber = scrubber

    def format(self, record: logging.LogRecord) -> str:
        """The line for `record`, scrubbed."""
        return self.scrubber.scrub(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring for its fields)."""

    def __init__(self, scrubber: SecretScrubber) -> None:
        super().__init__()
        self.scrubber = scrubber

    def format(self, record: logging.LogRecord) -> str:
        """The JSON line for `record`, scrubbed."""
        when = datetime.fromtimestamp(record.created, UTC)
        line: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            **log_context.current(),
        }
        event = getattr(record, "event", None)
        if isinstance(event, str):
            line["event"] = event
        line["message"] = self.scrubber.scrub(record.getMessage())
        if record.exc_info:
            line["exception"] = self.scrubber.scrub(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = self.scrubber.scrub(record.exc_text)
        if record.stack_info:
            line["stack"] = self.scrubber.scrub(self.formatStack(record.stack_info))
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(
    log_format: LogFormat = "text", *, verbose: bool = False, stream: Any = None
) -> SecretScrubber:
    """Send the process's log records to stderr (or `stream`) in `log_format`.

    Returns the scrubber, so the caller registers secrets once it has them.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
    scrubber = SecretScrubber()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    formatter: logging.Formatter = (
        JsonFormatter(scrubber) if log_format == "json" else ScrubbingTextFormatter(scrubber)
    )
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    return scrubber
