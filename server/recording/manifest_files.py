"""Reading and writing ``manifest.json`` in a recording folder (blocking: call from a thread)."""

from __future__ import annotations

import os
from pathlib import Path

from .models import MANIFEST_NAME, Manifest


def read_manifest(directory: Path) -> Manifest | None:
    """The manifest in a recording folder, or None if missing or unreadable."""
    try:
        return Manifest.model_validate_json((directory / MANIFEST_NAME).read_bytes())
    except (OSError, ValueError):
        return None


def write_manifest(directory: Path, manifest: Manifest) -> None:
    """Write ``manifest.json`` atomically (temporary file, fsync, rename)."""
    temporary = directory / (MANIFEST_NAME + ".tmp")
    data = manifest.model_dump_json(indent=2).encode()
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, directory / MANIFEST_NAME)
