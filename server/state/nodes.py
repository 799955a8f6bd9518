"""Node registry entries: one per server process sharing the Redis.

A room's media lives in one node (the room -> node map in Redis); nodes
announce themselves with a heartbeat so a crashed node's rooms can move.
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
    #: Participants connected to this node now (its load, for placing new rooms).
    participants: int = 0


def new_node(url: str) -> NodeInfo:
    """Describe this process as a fresh node with a unique id."""
    return NodeInfo(
        id=f"node-{uuid.uuid4().hex[:12]}",
        url=url,
        hostname=socket.gethostname(),
        pid=os.getpid(),
        started_at=time.time(),
    )
