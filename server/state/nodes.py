"""Node registry entries: one per server process sharing the Redis.

A room is owned by one node (its lease in Redis); nodes announce themselves
with a heartbeat, so others can tell a dead node from a live one, and place
rooms on the least loaded live node when one drains.
"""

from __future__ import annotations

import os
import socket
import time
import uuid

from pydantic import BaseModel, ConfigDict


class NodeInfo(BaseModel):
    """What other nodes may know about a server process."""

    model_config = ConfigDict(extra="forbid")

    id: str
    #: The URL clients use to reach this node directly.
    url: str
    hostname: str
    pid: int
    started_at: float
    #: Sockets connected to this node now, and rooms it owns (its load).
    participants: int = 0
    rooms: int = 0
    #: A draining node takes no rooms (it is shutting down).
    draining: bool = False


def new_node(url: str) -> NodeInfo:
    """Describe this process as a fresh node with a unique id."""
    return NodeInfo(
        id=f"node-{uuid.uuid4().hex[:12]}",
        url=url,
        hostname=socket.gethostname(),
        pid=os.getpid(),
        started_at=time.time(),
    )
