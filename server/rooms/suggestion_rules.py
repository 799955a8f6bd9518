"""The rules of micro-suggestions (微建议) as pure functions: who submits, who sees what,
the fixed categories and statuses with their labels, the limits.

`server.rooms.suggestions` applies them on the owner; the snapshot uses `visible`
and `visible_timeline` so nobody sees another member's suggestion.
"""

from __future__ import annotations

from collections.abc import Iterable

from server.rooms.errors import Conflict
from server.rooms.models import Participant, Role, Suggestion, TimelineEntry

#: Suggestions one room keeps; beyond it new ones are refused (`suggestions_full`).
MAX_SUGGESTIONS = 300
#: Suggestions one participant may submit to one session.
MAX_SUGGESTIONS_PER_PARTICIPANT = 20

#: The roles that submit suggestions (members; the host and co-hosts are members too).
SUBMITTERS = frozenset({Role.MEMBER, Role.COHOST, Role.HOST})

#: The fixed categories with their Chinese and English labels (the UI has the same in i18n).
CATEGORIES: dict[str, tuple[str, str]] = {
    "economy": ("经济发展", "Economic development"),
    "environment": ("生态环境", "Environment"),
    "urban": ("城乡建设", "Urban and rural development"),
    "livelihood": ("民生保障", "Livelihoods and welfare"),
    "education": ("教育文化", "Education and culture"),
    "governance": ("社会治理", "Social governance"),
    "other": ("其他", "Other"),
}
#: Status labels (Chinese, English).
STATUSES: dict[str, tuple[str, str]] = {
    "received": ("已收到", "Received"),
    "forwarded": ("已转交", "Forwarded"),
    "answered": ("已答复", "Answered"),
}

#: The timeline entry of a submission (its data is the whole suggestion).
SUBMITTED = "suggestion_submitted"


def can_submit(role: Role) -> bool:
    """Whether this role submits suggestions."""
    return role in SUBMITTERS


def sees_all(role: Role) -> bool:
    """Whether this role sees everyone's suggestions (else only its own)."""
    return role.runs_queues


def visible(suggestions: Iterable[Suggestion], you: Participant) -> list[Suggestion]:
    """The suggestions `you` may see: all of them, or your own."""
    if sees_all(you.role):
        return list(suggestions)
    return [s for s in suggestions if s.by == you.identity]


def visible_timeline(entries: Iterable[TimelineEntry], you: Participant) -> list[TimelineEntry]:
    """The timeline without the submissions `you` may not see (they carry the text)."""
    if sees_all(you.role):
        return list(entries)
    return [e for e in entries if e.type != SUBMITTED or e.data.get("by") == you.identity]


def check_agenda_index(index: int, agenda_length: int) -> None:
    """Refuse an agenda item the session does not have (a session without one has item 0)."""
    if not 0 <= index < max(agenda_length, 1):
        raise Conflict(
            "agenda_out_of_range",
            f"agenda item {index} does not exist (0..{max(agenda_length, 1) - 1})",
        )
