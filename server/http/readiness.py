"""The node's readiness state: what `/readyz` reports besides Redis, set by the node's parts."""

from __future__ import annotations

import asyncio


class Readiness:
    """Whether this node should be sent new work; the node and its supervisors change it.

    `draining` is set when the node stops taking rooms (on SIGTERM);
    `fail()` records that something the node cannot run without is gone for good
    (the embedded Valkey could not be restarted): `yitang serve` then stops with
    a failure status, so that a process supervisor restarts the node.
    """

    def __init__(self) -> None:
        self.draining = False
        self.failure: str | None = None
        self._failed = asyncio.Event()

    def fail(self, reason: str) -> None:
        """Mark the node as failed (the first reason is kept) and wake `wait_failed`."""
        if self.failure is None:
            self.failure = reason
        self._failed.set()

    async def wait_failed(self) -> str:
        """Return the failure reason once the node has failed."""
        await self._failed.wait()
        assert self.failure is not None
        return self.failure
