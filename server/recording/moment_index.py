"""Search inside sessions: the moments of each recording (speeches, agenda items, chat), in Redis.

A moment is something at a time in a recording: a speech (found by the
speaker's name, venue and agenda item), an agenda item (by its title), a chat
message (by its text and sender), an approved question or opinion from the
public gallery (by its text, name and district) and members' micro-suggestions (by
their title, body and department). A hit
points at the moment's offset, where the archive player seeks.

Chinese has no spaces, so whitespace tokenisation finds nothing. We index
every character and every pair of adjacent characters of the normalized text
(NFKC, case-folded, whitespace removed — the same terms as the title index in
``archive_index``), intersect the sets of a query's pairs in Redis (ZINTER),
and check each candidate against the whole query. Why not a segmenter such as
jieba: its dictionary splits words differently in a short query than in a
sentence, and knows neither our members' names nor local place names
(清水塘, 石峰区), so exact two-character words and names would be missed
unless we curated a dictionary; its ~5 MB dictionary also costs a second to load
in every process. Character pairs find every substring, names included, and
the final check removes the pairs' false positives. RediSearch would do this
for us but is not in Valkey; these are plain sorted sets, hashes and sets.

The index is written when a recording is published (stopped, or recovered)
and removed with it.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict

from server.state import keys

from .archive_index import normalize, query_terms, title_terms
from .session_record import SessionRecord

logger = logging.getLogger(__name__)

MomentKind = Literal["speech", "agenda", "chat", "suggestion", "question"]
#: Candidates checked against the whole query per search, at most.
MAX_CANDIDATES = 2000
MAX_QUERY_LENGTH = 100


class Moment(BaseModel):
    """Something at a time in a recording."""

    model_config = ConfigDict(extra="forbid")

    recording_id: str
    kind: MomentKind
    #: Seconds from the recording's start (where the player seeks) and wall-clock time.
    offset: float
    at: float
    title: str
    #: Who (speech, chat), and the text shown (chat message; speaker and venue).
    identity: str | None = None
    name: str | None = None
    text: str = ""
    agenda_index: int | None = None
    agenda_title: str | None = None


class MomentHits(BaseModel):
    """A moment search's result: moments, newest recording first, then in recording order."""

    model_config = ConfigDict(extra="forbid")

    query: str
    moments: list[Moment]


def moments_of(record: SessionRecord) -> list[Moment]:
    """The searchable moments of a recording's record."""
    titles = {item.index: item.title for item in record.speaking.items}

    def moment(
        kind: MomentKind,
        offset: float,
        at: float,
        text: str,
        agenda_index: int | None,
        identity: str | None = None,
        name: str | None = None,
    ) -> Moment:
        return Moment(
            recording_id=record.recording_id or "",
            kind=kind,
            offset=offset,
            at=at,
            title=record.title,
            identity=identity,
            name=name,
            text=text,
            agenda_index=agenda_index,
            agenda_title=titles.get(agenda_index) if agenda_index is not None else None,
        )

    def joined(*parts: str | None) -> str:
        return " ".join(part for part in parts if part)

    found = [
        moment("agenda", item.offset, item.start, item.title, item.index)
        for item in record.speaking.items
        if item.start is not None and item.offset is not None
    ]
    found += [
        moment(
            "speech",
            s.offset,
            s.start,
            f"{s.name} {s.venue_name}".strip(),
            s.agenda_index,
            s.identity,
            s.name,
        )
        for s in record.speaking.speeches
    ]
    found += [
        moment("chat", m.offset, m.at, m.text, m.agenda_index, m.identity, m.name)
        for m in record.chat
    ]
    found += [
        moment(
            "question",
            q.offset,
            q.at,
            joined(q.text, q.district, q.answer),
            q.agenda_index,
            name=q.name,
        )
        for q in record.questions
    ]
    found += [
        moment(
            "suggestion",
            s.offset,
            s.at,
            joined(s.title, s.body, s.department),
            s.agenda_index,
            s.identity,
            s.name,
        )
        for s in record.suggestions
    ]
    return found


def searchable(moment: Moment) -> str:
    """The text a moment is found by (normalized)."""
    parts = [moment.text, moment.name or "", moment.identity or ""]
    if moment.kind == "speech":
        parts.append(moment.agenda_title or "")
    # Fields apart (NUL is no whitespace to normalize away): no match across two fields.
    return "\0".join(normalize(part) for part in parts if part)


class MomentIndex:
    """The moment index in Redis (keys: ``server.state.keys.moments_by_term`` and the two
    per-recording keys)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._redis: Any = client

    async def put(self, recording_id: str, started_at: float, moments: list[Moment]) -> None:
        """Index a recording's moments (replacing any earlier index of it)."""
        await self.remove(recording_id)
        if not moments:
            return
        score = started_at * 1000.0
        all_terms: set[str] = set()
        async with self._redis.pipeline(transaction=False) as pipe:
            for n, moment in enumerate(moments):
                member = f"{recording_id}/{n}"
                terms = title_terms(searchable(moment))
                all_terms |= terms
                for term in terms:
                    pipe.zadd(keys.moments_by_term(term), {member: score})
                pipe.hset(keys.recording_moments(recording_id), str(n), moment.model_dump_json())
            pipe.sadd(keys.recording_moment_terms(recording_id), *all_terms)
            await pipe.execute()

    async def remove(self, recording_id: str) -> None:
        """Remove a recording's moments from the index (nothing if it had none)."""
        terms_key = keys.recording_moment_terms(recording_id)
        terms = [t.decode() for t in await self._redis.smembers(terms_key)]
        count = await self._redis.hlen(keys.recording_moments(recording_id))
        if not terms and not count:
            return
        members = [f"{recording_id}/{n}" for n in range(count)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for term in terms:
                if members:
                    pipe.zrem(keys.moments_by_term(term), *members)
            pipe.delete(terms_key, keys.recording_moments(recording_id))
            await pipe.execute()

    async def indexed(self, recording_id: str) -> bool:
        """Whether the recording's moments are in the index."""
        return bool(await self._redis.exists(keys.recording_moments(recording_id)))

    async def search(
        self, query: str, *, recording_id: str | None = None, limit: int = 50
    ) -> list[Moment]:
        """Moments containing ``query`` (a substring, Chinese or not): newest recording first,
        then in the order they happened."""
        needle = normalize(query)
        terms = query_terms(query)
        if not needle or not terms:
            return []
        term_keys = [keys.moments_by_term(t) for t in sorted(terms)]
        raw = await self._redis.zinter(term_keys, aggregate="MIN", withscores=True)
        members = [(m.decode(), score) for m, score in raw]
        if recording_id is not None:
            members = [(m, s) for m, s in members if m.rsplit("/", 1)[0] == recording_id]
        members.sort(key=lambda pair: (-pair[1], pair[0].rsplit("/", 1)[0]))
        found: list[Moment] = []
        by_recording: dict[str, list[str]] = {}
        for member, _ in members[:MAX_CANDIDATES]:
            recording, _, n = member.rpartition("/")
            by_recording.setdefault(recording, []).append(n)
        for recording, ns in by_recording.items():
            raws = await self._redis.hmget(keys.recording_moments(recording), ns)
            moments = [Moment.model_validate_json(r) for r in raws if r]
            hits = [m for m in moments if needle in searchable(m)]
            found += sorted(hits, key=lambda m: (m.offset, m.kind))
            if len(found) >= limit:
                break
        return found[:limit]
