"""The check that no token or key reaches a log line, over the whole test suite.

Every log record made in the test process (root logger at INFO, Yitang's own
loggers at DEBUG) and every line of the server processes' logs
(`tests.processes.server_process`) is kept for the running test, then checked
at its end (`tests/conftest.py`, autouse): a line holding a JWT (join tokens),
a bearer credential, or one of the secrets the servers of the test used (API
key, token-signing secret, metrics token) fails the test that produced it.

One guard serves the whole run (process helpers have no fixtures at hand).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path

#: A JWT as join tokens are written: base64url header (`{"` -> `eyJ`), payload, signature.
JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
#: An Authorization header value.
BEARER = re.compile(r"Bearer\s+(?!<)[A-Za-z0-9._~+/=-]{8,}")
#: Shorter values are not secrets the servers generate (and would match ordinary words).
MIN_SECRET_LENGTH = 12
#: Lines kept per test at most (a runaway logger must not exhaust memory).
MAX_LINES = 200_000


class LogSecretsGuard:
    """Collects log lines and secrets; `findings()` names every line that leaks one."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self.secrets: set[str] = set()
        self.dropped = 0

    def add_secrets(self, *values: str | None) -> None:
        """Secrets that must not appear in any line (None and short values are ignored)."""
        self.secrets.update(v for v in values if v and len(v) >= MIN_SECRET_LENGTH)

    def add_secret_files(self, data_dir: Path) -> None:
        """The API key and token secret a server keeps in its data directory, if there."""
        for name in ("api-key", "token-secret"):
            path = data_dir / name
            if path.exists():
                self.add_secrets(path.read_text().strip())

    def add_line(self, source: str, line: str) -> None:
        """One log line from `source` (a logger, or a server's log file)."""
        if len(self.lines) >= MAX_LINES:
            self.dropped += 1
            return
        self.lines.append((source, line))

    def add_lines(self, source: str, lines: Iterable[str]) -> None:
        """Lines of a log file."""
        for line in lines:
            self.add_line(source, line)

    def findings(self) -> list[str]:
        """Every line holding a token or a secret, with what it holds (shortened)."""
        found = []
        for source, line in self.lines:
            what = []
            if JWT.search(line):
                what.append("a JWT")
            if BEARER.search(line):
                what.append("a bearer credential")
            if any(secret in line for secret in self.secrets):
                what.append("a server secret")
            if what:
                found.append(f"{source}: {' and '.join(what)} in {line[:160]!r}")
        return found

    def reset(self) -> None:
        """Forget the lines (secrets stay: a key must not appear in any later line either)."""
        self.lines.clear()
        self.dropped = 0


class GuardHandler(logging.Handler):
    """Hands every record, formatted with its traceback, to the guard."""

    def __init__(self, guard: LogSecretsGuard) -> None:
        super().__init__(logging.DEBUG)
        self.guard = guard
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record's lines, and freeze the record (see `freeze`)."""
        try:
            text = self.format(record)
        except Exception:  # a record whose arguments do not format is a bug elsewhere
            text = str(record.msg)
        self.guard.add_lines(record.name, text.splitlines() or [""])
        freeze(record)


def freeze(record: logging.LogRecord) -> None:
    """Replace the record's arguments and traceback by their text, as QueueHandler does.

    The guard lowers the root level to INFO, so records are made that were not
    before, and pytest keeps every record of a test for its report: with their
    arguments (`logger.info("%r closed", room)`) and tracebacks they would keep
    the objects they name alive, and tests that check an object is collected
    would fail. This handler comes first (installed at configure time, before
    pytest's per-test handlers), so they keep the frozen record.
    """
    if record.args:
        try:
            record.msg = record.getMessage()
        except Exception:
            record.msg = str(record.msg)
        record.args = None
    if record.exc_info:
        if not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.exc_info = None


#: The run's guard.
GUARD = LogSecretsGuard()
