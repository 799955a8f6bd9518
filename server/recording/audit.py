"""The audit log: who removed what from the archive, and when, kept in a Redis stream.

Every deletion of a recording — by the API or by the retention sweep — adds an
entry before anything is removed, so no recording disappears without one. The
admin API has one shared key, so "who" is the credential used (``api`` or
``retention``), the client's address, and the operator's name if the client
states one (``X-Yitang-Operator``); the entry also keeps what the recording was
(title, room, time, its files' names, sizes and checksums).
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field

from server.state import keys

AuditAction = Literal["recording_deleted"]


class DeletedFile(BaseModel):
    """A file a deleted recording had."""

    model_config = ConfigDict(extra="forbid")

    name: str
    size: int
    sha256: str


class AuditEntry(BaseModel):
    """One audited action."""

    model_config = ConfigDict(extra="forbid")

    #: The stream entry id (set when read back).
    id: str = ""
    at: float = Field(default_factory=time.time)
    action: AuditAction
    #: The credential used: ``api`` (the admin key) or ``retention`` (the server itself).
    by: str
    operator: str | None = None
    address: str | None = None
    recording_id: str
    room_id: str
    title: str
    started_at: float
    duration: float = 0.0
    files: list[DeletedFile] = Field(default_factory=list)
    bytes: int = 0


class AuditList(BaseModel):
    """Audit entries, newest first."""

    model_config = ConfigDict(extra="forbid")

    entries: list[AuditEntry]


class AuditLog:
    """Append to and read the audit stream (``server.state.keys.AUDIT``)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._redis: Any = client

    async def append(self, entry: AuditEntry) -> str:
        """Add an entry; returns its id."""
        entry_id = await self._redis.xadd(
            keys.AUDIT,
            {"entry": entry.model_dump_json(exclude={"id"})},
            maxlen=keys.AUDIT_MAXLEN,
            approximate=True,
        )
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def entries(self, limit: int = 100, recording_id: str | None = None) -> list[AuditEntry]:
        """The newest entries (of one recording, if given), newest first."""
        found: list[AuditEntry] = []
        last = "+"
        # Pages from the newest; a recording filter may skip many (bounded by the stream's cap).
        while len(found) < limit:
            rows = await self._redis.xrevrange(keys.AUDIT, max=last, count=500)
            if not rows:
                break
            for raw_id, fields in rows:
                entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                data = json.loads(fields[b"entry"])
                entry = AuditEntry.model_validate({**data, "id": entry_id})
                if recording_id is None or entry.recording_id == recording_id:
                    found.append(entry)
            oldest = rows[-1][0]
            last = "(" + (oldest.decode() if isinstance(oldest, bytes) else str(oldest))
            if len(rows) < 500:
                break
        return found[:limit]
