"""Label values with a bounded number of distinct values.

A Prometheus series exists for every distinct set of label values, forever:
a label fed from client input (an event name, an error code relayed from
another node) would let a client create series without end. Event names are
therefore taken from the command table only, and open sets such as error codes
are capped.
"""

from __future__ import annotations

import re

from server.rooms.commands import CLIENT_COMMANDS, CONNECTION_EVENTS

#: Every event a client may send, as the command table knows them.
KNOWN_EVENTS: frozenset[str] = frozenset(CLIENT_COMMANDS) | frozenset(CONNECTION_EVENTS)
#: The label of an event name outside the table.
UNKNOWN_EVENT = "unknown"
OTHER = "other"


def event_label(event: object) -> str:
    """The event's name if the command table has it, else `unknown`."""
    return event if isinstance(event, str) and event in KNOWN_EVENTS else UNKNOWN_EVENT


class BoundedLabels:
    """Values of an open set (error codes, Redis commands) up to `limit` distinct ones.

    A value must look like an identifier (`pattern`); beyond `limit` distinct
    values, and for anything else, the label is `other`.
    """

    def __init__(self, limit: int, pattern: str = r"[a-z][a-z0-9_]{0,47}") -> None:
        self.limit = limit
        self._pattern = re.compile(pattern)
        self._seen: set[str] = set()

    def __call__(self, value: object) -> str:
        """The label for `value`."""
        if not isinstance(value, str) or not self._pattern.fullmatch(value):
            return OTHER
        if value in self._seen:
            return value
        if len(self._seen) >= self.limit:
            return OTHER
        self._seen.add(value)
        return value
