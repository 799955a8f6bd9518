"""Secrets kept in the data directory: the admin API key and the token-signing key.

Both are generated on first start (0600 files) and reused afterwards, so join
links stay valid across restarts. Every node of a deployment must share them:
give all nodes the same data directory or the same environment variables.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

API_KEY_FILE = "api-key"
TOKEN_SECRET_FILE = "token-secret"


def new_secret(nbytes: int) -> str:
    """A random URL-safe secret of `nbytes` bytes that does not start with "-".

    A leading dash makes a command line read the key as an option (`yitang room
    create --api-key -Xy…` fails), one key in 64 otherwise.
    """
    while True:
        value = secrets.token_urlsafe(nbytes)
        if not value.startswith("-"):
            return value


def _read_or_create(path: Path, make: int) -> str:
    if path.exists():
        value = path.read_text().strip()
        if value:
            return value
    path.parent.mkdir(parents=True, exist_ok=True)
    value = new_secret(make)
    # O_EXCL: two nodes starting together on one data directory agree on one value.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def load_api_key(data_dir: Path, configured: str | None) -> str:
    """The configured API key, or the one in the data directory (created if missing)."""
    if configured:
        return configured
    return _read_or_create(data_dir / API_KEY_FILE, 32)


def load_token_secret(data_dir: Path, configured: str | None) -> str:
    """The configured signing secret, or the one in the data directory (created if missing)."""
    if configured:
        return configured
    return _read_or_create(data_dir / TOKEN_SECRET_FILE, 48)
