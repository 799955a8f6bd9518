"""Errors of the recording service a caller can act on (the HTTP edge maps them to statuses)."""

from __future__ import annotations

from server.rooms.errors import Conflict, NotFound, RoomError


class RecordingNotFound(NotFound):
    """No recording (or no file of a recording) with this id or name."""


class RecordingConflict(Conflict):
    """Already recording, not recording, media hosted elsewhere, recording still running..."""


class ArchiveUnavailable(RoomError):
    """The archive folder cannot be written (missing, not a folder, read-only, disk full)."""

    status = 507
