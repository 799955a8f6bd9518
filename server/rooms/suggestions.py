"""Micro-suggestions (微建议): members' written suggestions, each tied to an agenda item.

Members (and the host and co-hosts) submit them during the session over the
socket (`suggestion_submit`), or before it over the REST API with their join
token (`POST /api/rooms/{id}/suggestions`; the owner applies both alike, see
`CommandSpec.joined`). Observers, guests and moderators do not submit
(`suggestion_not_allowed`).

Who sees what: the host, co-hosts and moderators see every suggestion, per
agenda item (`suggestion` events and their snapshot); a member sees only their
own. The `suggestion_submitted` timeline entry carries the whole suggestion
(the archive's record and the minutes are made from the timeline), so it is
never broadcast and is left out of the snapshots of those who may not see it
(`visible_timeline`).

After the session the secretariat sets each suggestion's status (received /
forwarded / answered) and reply over the REST API; that handling is kept apart
from the owner's state (see `server.state.suggestion_replies`).

Limits (`server.rooms.suggestion_rules`): a few per participant and then one a
minute, at most `MAX_SUGGESTIONS_PER_PARTICIPANT` each and `MAX_SUGGESTIONS` per room.
"""

from __future__ import annotations

from server.rooms import acks, payloads
from server.rooms.errors import Conflict, Forbidden, RateLimited
from server.rooms.models import Participant, Suggestion
from server.rooms.owned_room import OwnedRoom, now_ms
from server.rooms.server_events import SuggestionReceived
from server.rooms.suggestion_rules import (
    MAX_SUGGESTIONS,
    MAX_SUGGESTIONS_PER_PARTICIPANT,
    SUBMITTED,
    can_submit,
    check_agenda_index,
)


async def submit(room: OwnedRoom, actor: Participant, req: payloads.SuggestionSubmit) -> acks.Ack:
    """Keep a member's suggestion, tell those who see all, and add it to the timeline."""
    if not can_submit(actor.role):
        raise Forbidden(
            "suggestion_not_allowed", "only members, co-hosts and the host submit suggestions"
        )
    room.require_open()
    state = room.state
    index = room.live.agenda_index if req.agenda_index is None else req.agenda_index
    check_agenda_index(index, len(room.room.agenda))
    own = sum(1 for s in state.suggestions.values() if s.by == actor.identity)
    if own >= MAX_SUGGESTIONS_PER_PARTICIPANT:
        raise Conflict(
            "suggestion_limit_reached",
            f"you have submitted {MAX_SUGGESTIONS_PER_PARTICIPANT} suggestions to this session",
        )
    if len(state.suggestions) >= MAX_SUGGESTIONS:
        raise Conflict("suggestions_full", "this session takes no more suggestions")
    if not room.limits.allow_suggestion(actor.identity):
        raise RateLimited(
            "suggestion_rate_limited",
            "you have submitted several suggestions just now; try again in a minute",
        )
    suggestion = Suggestion(
        id=f"s{state.suggestion_next}",
        by=actor.identity,
        name=state.renamed.get(actor.identity, actor.name),
        venue=actor.venue,
        agenda_index=index,
        category=req.category,
        department=req.department,
        title=req.title,
        body=req.body,
        submitted_at=now_ms(),
        before_session=room.live.status == "scheduled",
    )
    state.suggestion_next += 1
    state.suggestions[suggestion.id] = suggestion
    room.touch()
    await room.timeline(SUBMITTED, suggestion.model_dump(mode="json"), tell=False)
    notice = SuggestionReceived(suggestion=suggestion)
    told = set()
    for viewer in room.queue_runners():
        await room.send(viewer, "suggestion", notice)
        told.add(viewer.identity)
    submitter = room.participants.get(actor.identity)
    if submitter is not None and submitter.identity not in told:
        await room.send(submitter, "suggestion", notice)
    return acks.ok(suggestion=suggestion)
