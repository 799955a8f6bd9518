"""The archive's index in Redis: summaries, by date, venue, speaker and title terms.

Listing and search read only these keys (see ``server.state.keys``), never the
disk. Title search works on substrings, Chinese included: every title is
indexed by its characters and character pairs, a query intersects the sets
of its pairs, and the candidates are checked against the whole query.
Also here: the lease a recording node keeps alive while it writes (taken,
renewed and released by compare-and-set, so only its holder writes the
recording's manifest), the map of rooms to their recording in progress, and
the render job's status.
"""

from __future__ import annotations

import time
import unicodedata
from typing import Any, Literal

import redis.asyncio as aioredis

from server.state import keys

from .models import Manifest, RecordingSummary, RenderStatus

LeaseRenewal = Literal["held", "retaken", "lost"]

# The writer lease is compared and set atomically, so two nodes can never both believe
# they write a recording (a resume racing a finalizing recovery, a stalled node waking up).
# KEYS[1] lease; ARGV: node id, ttl (ms), node whose lease may be taken over ("" if none).
_ACQUIRE_LEASE = """
local holder = redis.call('GET', KEYS[1])
if (not holder) or holder == ARGV[1] or (ARGV[3] ~= '' and holder == ARGV[3]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return holder
"""
# KEYS[1] lease; ARGV: node id, ttl (ms). 1: extended, 2: expired and taken again, 0: lost.
_RENEW_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
"""
# KEYS[1] lease; ARGV[1] node id.
_RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def normalize(text: str) -> str:
    """The form titles and queries are compared in: NFKC, case-folded, no whitespace."""
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


def title_terms(title: str) -> set[str]:
    """Every character and every pair of adjacent characters of the normalized title."""
    text = normalize(title)
    return set(text) | {text[i : i + 2] for i in range(len(text) - 1)}


def query_terms(query: str) -> set[str]:
    """The index terms a substring query must all match."""
    text = normalize(query)
    if len(text) <= 1:
        return set(text)
    return {text[i : i + 2] for i in range(len(text) - 1)}


def speaker_keys(summary: RecordingSummary) -> set[str]:
    """What the speaker index holds for a summary: identities and case-folded names."""
    return set(summary.speakers) | {normalize(name) for name in summary.speaker_names if name}


def _score(summary: RecordingSummary) -> float:
    return summary.started_at * 1000.0


def render_from_hash(raw: dict[bytes, bytes]) -> RenderStatus:
    """A RenderStatus from its Redis hash (empty: never requested)."""
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    if not fields:
        return RenderStatus()
    return RenderStatus.model_validate(
        {
            "state": fields.get("state", "none"),
            "progress": float(fields.get("progress") or 0),
            "message": fields.get("message", ""),
            "job_id": fields.get("job_id") or None,
            "attempt": int(fields.get("attempt") or 0),
            "updated": float(fields.get("updated") or 0),
        }
    )


def render_fields(status: RenderStatus) -> dict[str, str]:
    """A RenderStatus as the fields of its Redis hash."""
    return {
        "state": status.state,
        "progress": f"{status.progress:.2f}",
        "message": status.message,
        "job_id": status.job_id or "",
        "attempt": str(status.attempt),
        "updated": f"{status.updated or time.time():.3f}",
    }


def summarize(manifest: Manifest) -> RecordingSummary:
    """The archive index's view of a manifest."""
    names = {p.identity: p.name for p in manifest.participants}
    speakers = list(dict.fromkeys(c.identity for c in manifest.chapters if c.identity))
    if manifest.host and manifest.host not in speakers:
        speakers.insert(0, manifest.host)
    venue_ids = {p.venue for p in manifest.participants}
    venues = [v for v in manifest.room.venues if v.id in venue_ids] or list(manifest.room.venues)
    return RecordingSummary(
        id=manifest.id,
        room_id=manifest.room.id,
        title=manifest.room.title,
        state=manifest.state,
        complete=manifest.complete,
        error=manifest.error,
        started_at=manifest.started_at,
        stopped_at=manifest.stopped_at,
        duration=manifest.duration,
        started_by=manifest.started_by,
        node=manifest.node,
        venues=venues,
        agenda=[item.title for item in manifest.room.agenda],
        speakers=speakers,
        speaker_names=[names[s] for s in speakers if s in names],
        participants=len(manifest.participants),
        files=len(manifest.files),
        has_combined=manifest.combined is not None,
        parts=len(manifest.all_parts()),
        gaps=manifest.gaps,
    )


class ArchiveIndex:
    """Typed operations over the recording keys, on one ``redis.asyncio`` client."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._redis: Any = client

    # --- summaries and search ------------------------------------------------------------

    async def put(self, summary: RecordingSummary) -> None:
        """Store (or replace) a summary and its index entries."""
        previous = await self.get(summary.id)
        score = _score(summary)
        async with self._redis.pipeline(transaction=True) as pipe:
            if previous is not None:
                self._unindex(pipe, previous)
            pipe.set(keys.recording(summary.id), summary.model_dump_json())
            pipe.zadd(keys.RECORDINGS, {summary.id: score})
            for venue in summary.venues:
                pipe.zadd(keys.recordings_by_venue(venue.id), {summary.id: score})
            for speaker in speaker_keys(summary):
                pipe.zadd(keys.recordings_by_speaker(speaker), {summary.id: score})
            for term in title_terms(summary.title):
                pipe.zadd(keys.recordings_by_term(term), {summary.id: score})
            await pipe.execute()

    async def get(self, recording_id: str) -> RecordingSummary | None:
        """The summary of one recording, or None."""
        raw = await self._redis.get(keys.recording(recording_id))
        return RecordingSummary.model_validate_json(raw) if raw else None

    async def delete(self, recording_id: str) -> bool:
        """Remove a recording from the index; False if it was not there."""
        previous = await self.get(recording_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            if previous is not None:
                self._unindex(pipe, previous)
            pipe.delete(
                keys.recording(recording_id),
                keys.recording_render(recording_id),
                keys.recording_lease(recording_id),
            )
            pipe.zrem(keys.RECORDINGS, recording_id)
            await pipe.execute()
        return previous is not None

    def _unindex(self, pipe: Any, summary: RecordingSummary) -> None:
        for venue in summary.venues:
            pipe.zrem(keys.recordings_by_venue(venue.id), summary.id)
        for speaker in speaker_keys(summary):
            pipe.zrem(keys.recordings_by_speaker(speaker), summary.id)
        for term in title_terms(summary.title):
            pipe.zrem(keys.recordings_by_term(term), summary.id)

    async def search(
        self,
        *,
        query: str | None = None,
        since: float | None = None,
        until: float | None = None,
        venue: str | None = None,
        speaker: str | None = None,
        limit: int = 100,
    ) -> list[RecordingSummary]:
        """Recordings matching every given filter, newest first (times in seconds since epoch)."""
        low = "-inf" if since is None else since * 1000.0
        high = "+inf" if until is None else until * 1000.0
        candidate_sets: list[set[str]] = []
        if venue:
            candidate_sets.append(await self._ids(keys.recordings_by_venue(venue), low, high))
        if speaker:
            found = await self._ids(keys.recordings_by_speaker(speaker), low, high)
            found |= await self._ids(keys.recordings_by_speaker(normalize(speaker)), low, high)
            candidate_sets.append(found)
        needle = normalize(query or "")
        for term in query_terms(query or ""):
            candidate_sets.append(await self._ids(keys.recordings_by_term(term), low, high))
        if candidate_sets:
            ids = set.intersection(*candidate_sets)
            scores = await self._scores(ids)
            ordered = sorted(ids, key=lambda i: scores.get(i, 0.0), reverse=True)
        else:
            raw = await self._redis.zrevrangebyscore(keys.RECORDINGS, high, low)
            ordered = [r.decode() for r in raw]
        summaries: list[RecordingSummary] = []
        # Fetch in pages: the title check may discard some candidates.
        for start in range(0, len(ordered), 200):
            page = ordered[start : start + 200]
            raws = await self._redis.mget([keys.recording(i) for i in page])
            for raw in raws:
                if not raw:
                    continue
                summary = RecordingSummary.model_validate_json(raw)
                if needle and needle not in normalize(summary.title):
                    continue
                summaries.append(summary)
                if len(summaries) >= limit:
                    return summaries
        return summaries

    async def _ids(self, key: str, low: float | str, high: float | str) -> set[str]:
        return {r.decode() for r in await self._redis.zrangebyscore(key, low, high)}

    async def _scores(self, ids: set[str]) -> dict[str, float]:
        if not ids:
            return {}
        ordered = list(ids)
        scores = await self._redis.zmscore(keys.RECORDINGS, ordered)
        return {i: float(s or 0.0) for i, s in zip(ordered, scores, strict=True)}

    async def older_than(self, cutoff: float) -> list[str]:
        """Ids of recordings that started before ``cutoff`` (seconds since epoch)."""
        raw = await self._redis.zrangebyscore(keys.RECORDINGS, "-inf", f"({cutoff * 1000.0}")
        return [r.decode() for r in raw]

    # --- recordings in progress ------------------------------------------------------------

    async def set_active(self, room_id: str, recording_id: str) -> None:
        """Mark ``recording_id`` as the room's recording in progress."""
        await self._redis.hset(keys.ACTIVE_RECORDINGS, room_id, recording_id)

    async def active(self, room_id: str) -> str | None:
        """The id of the room's recording in progress, if any (on any node)."""
        raw = await self._redis.hget(keys.ACTIVE_RECORDINGS, room_id)
        return raw.decode() if raw else None

    async def active_recordings(self) -> list[str]:
        """Ids of every recording marked in progress (on any node)."""
        raw = await self._redis.hvals(keys.ACTIVE_RECORDINGS)
        return [r.decode() for r in raw]

    async def clear_active(self, room_id: str, recording_id: str) -> None:
        """Release the room if ``recording_id`` still holds it."""
        current = await self.active(room_id)
        if current == recording_id:
            await self._redis.hdel(keys.ACTIVE_RECORDINGS, room_id)

    async def acquire_lease(
        self, recording_id: str, node_id: str, ttl: float, *, take_over_from: str | None = None
    ) -> str | None:
        """Become the recording's writer for ``ttl`` seconds; None on success, else the holder.

        Free, or already ours: taken. Held by ``take_over_from`` (a node the caller knows
        is dead): taken over at once instead of waiting for it to expire. Anyone else: refused.
        """
        holder = await self._redis.eval(
            _ACQUIRE_LEASE,
            1,
            keys.recording_lease(recording_id),
            node_id,
            int(ttl * 1000),
            take_over_from or "",
        )
        return None if holder == 1 else _text(holder)

    async def renew_lease(self, recording_id: str, node_id: str, ttl: float) -> LeaseRenewal:
        """Extend ``node_id``'s lease: ``held`` (extended), ``retaken`` (it had expired and
        nobody had it: set again) or ``lost`` (another node holds it now; left alone)."""
        result = await self._redis.eval(
            _RENEW_LEASE, 1, keys.recording_lease(recording_id), node_id, int(ttl * 1000)
        )
        return "held" if result == 1 else "retaken" if result == 2 else "lost"

    async def lease_holder(self, recording_id: str) -> str | None:
        """The node writing this recording, or None if nobody is (any more)."""
        raw = await self._redis.get(keys.recording_lease(recording_id))
        return raw.decode() if raw else None

    async def release_lease(self, recording_id: str, node_id: str) -> None:
        """``node_id`` stops writing the recording (a lease held by another node stays)."""
        await self._redis.eval(_RELEASE_LEASE, 1, keys.recording_lease(recording_id), node_id)

    # --- render job status -----------------------------------------------------------------

    async def render_status(self, recording_id: str) -> RenderStatus:
        """The combined-video job's state (``none`` if never requested)."""
        return render_from_hash(await self._redis.hgetall(keys.recording_render(recording_id)))

    async def render_statuses(self, recording_ids: list[str]) -> dict[str, RenderStatus]:
        """Render states of several recordings in one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for recording_id in recording_ids:
                pipe.hgetall(keys.recording_render(recording_id))
            raws = await pipe.execute()
        return {rid: render_from_hash(raw) for rid, raw in zip(recording_ids, raws, strict=True)}

    async def set_render_status(self, recording_id: str, status: RenderStatus) -> None:
        """Replace the combined-video job's state."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.recording_render(recording_id))
            pipe.hset(keys.recording_render(recording_id), mapping=render_fields(status))
            await pipe.execute()
