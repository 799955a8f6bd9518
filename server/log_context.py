"""What a log line is about: the node, the room and the participant, as context variables.

Set where the work starts (the node when the application starts, the room and
identity where a Socket.IO event or a room's actor begins); every log record
made inside that work carries them (`server.logging_setup` writes them out).
Context variables follow asyncio tasks: a task started inside inherits them,
and setting one inside a task changes nothing outside it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: This node's id (one per process in a deployment; tests may run several).
node: contextvars.ContextVar[str | None] = contextvars.ContextVar("yitang_node", default=None)
#: The consultation room the work is for.
room: contextvars.ContextVar[str | None] = contextvars.ContextVar("yitang_room", default=None)
#: The participant (token identity) whose request it is.
identity: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "yitang_identity", default=None
)


def current() -> dict[str, str]:
    """The context fields that are set, by name."""
    fields = {"node": node.get(), "room": room.get(), "identity": identity.get()}
    return {name: value for name, value in fields.items() if value is not None}


def in_room(room_id: str, start: Callable[[], T]) -> T:
    """Call `start()` (which starts a room's tasks) with the room set and no identity, so
    the tasks it starts log as the room's, not as whichever participant caused them."""

    def run() -> T:
        room.set(room_id)
        identity.set(None)
        return start()

    return contextvars.copy_context().run(run)
