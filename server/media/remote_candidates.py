"""RemoteCandidates: the candidates a client trickles for one of its peer connections.

Validated and filtered by the ICE policy, capped per connection, and queued
until the connection's remote description is set (aiortc cannot add them
before). Both the publish and the subscribe connection use one of these.
"""

from __future__ import annotations

from aiortc import RTCIceCandidate, RTCPeerConnection

from .config import MediaConfig
from .errors import MediaError
from .ice_policy import IcePolicy, add_candidate_bundled


class RemoteCandidates:
    """Trickled remote candidates of one connection (the caller serialises calls)."""

    def __init__(self, policy: IcePolicy, config: MediaConfig, waiting_for: str) -> None:
        self._policy = policy
        self._config = config
        #: What the queue waits for ("the offer", "the answer"), for error messages.
        self._waiting_for = waiting_for
        self._pending: list[RTCIceCandidate | None] = []
        # Accepted for the current connection; reset with the connection.
        self._accepted = 0

    async def add(self, pc: RTCPeerConnection | None, candidate: object) -> None:
        """Validate `candidate` and add it to `pc`, or queue it until `apply_pending`."""
        accepted, parsed = self._policy.parse_candidate(candidate)
        if not accepted:
            return
        if parsed is not None and self._accepted >= self._config.max_remote_candidates:
            raise MediaError("bad_candidate", "too many candidates for this connection")
        if pc is None or pc.remoteDescription is None:
            if len(self._pending) >= self._config.max_pending_candidates:
                raise MediaError("bad_candidate", f"too many candidates before {self._waiting_for}")
            self._pending.append(parsed)
        else:
            await add_candidate_bundled(pc, parsed)
        if parsed is not None:
            self._accepted += 1

    async def apply_pending(self, pc: RTCPeerConnection) -> None:
        """Add the queued candidates, now that `pc` has its remote description."""
        pending, self._pending = self._pending, []
        for candidate in pending:
            await add_candidate_bundled(pc, candidate)

    def reset(self) -> None:
        """Forget everything: the connection was released."""
        self._pending.clear()
        self._accepted = 0
