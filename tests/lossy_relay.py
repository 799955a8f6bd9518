"""A userspace UDP relay on loopback that drops a share of the datagrams it passes.

Put in front of a TURN server (the browser's only way out when opened with
`?ice=relay`), it makes one venue's link lossy in both directions without
touching the machine's network: Chromium's own emulation
(`Network.emulateNetworkConditions`) does not reach WebRTC's UDP here.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

Address = tuple[str, int]


class _Side(asyncio.DatagramProtocol):
    def __init__(self, relay: LossyRelay, client: Address | None) -> None:
        self.relay = relay
        self.client = client
        self.transport: Any = None  # the datagram transport (sendto)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if self.client is None:  # the listening side: from a client
            self.relay.from_client(data, addr)
        else:  # an upstream socket: from the server, back to its client
            self.relay.to_client(data, self.client)


@dataclass
class LossyRelay:
    """Forwards datagrams between clients and `upstream`, dropping `loss` of them.

    `loss_to_client` (None: `loss`) is the share dropped on the way back to a client;
    with `drop_nacks_to_client` every RTCP NACK to a client is dropped, so that what
    the client's uplink loses is lost for good (no retransmission repairs it).
    """

    upstream: Address
    loss: float = 0.0
    loss_to_client: float | None = None
    drop_nacks_to_client: bool = False
    seed: int = 13
    port: int = 0
    passed: int = 0
    dropped: int = 0
    _listener: _Side | None = None
    _upstreams: dict[Address, _Side] = field(default_factory=dict)
    _pending: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def _keep(self, loss: float | None = None) -> bool:
        if self._random.random() < (self.loss if loss is None else loss):
            self.dropped += 1
            return False
        self.passed += 1
        return True

    def from_client(self, data: bytes, client: Address) -> None:
        side = self._upstreams.get(client)
        if side is None:
            task = asyncio.ensure_future(self._open(client, data))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            return
        if side.transport is not None and self._keep():
            side.transport.sendto(data, self.upstream)

    async def _open(self, client: Address, first: bytes) -> None:
        loop = asyncio.get_running_loop()
        side = _Side(self, client)
        self._upstreams[client] = side
        await loop.create_datagram_endpoint(lambda: side, local_addr=("127.0.0.1", 0))
        if side.transport is not None and self._keep():
            side.transport.sendto(first, self.upstream)

    async def open_for(self, client: Address) -> int:
        """Open the upstream socket for `client` now; its port (what upstream sees).

        For a peer that must learn the client's address through the relay before
        the client sends anything (the client's own ICE candidate, rewritten).
        """
        side = self._upstreams.get(client)
        if side is None:
            loop = asyncio.get_running_loop()
            side = _Side(self, client)
            self._upstreams[client] = side
            await loop.create_datagram_endpoint(lambda: side, local_addr=("127.0.0.1", 0))
        assert side.transport is not None
        port: int = side.transport.get_extra_info("sockname")[1]
        return port

    def to_client(self, data: bytes, client: Address) -> None:
        listener = self._listener
        if self.drop_nacks_to_client and _is_rtcp_nack(data):
            self.dropped += 1
            return
        if (
            listener is not None
            and listener.transport is not None
            and self._keep(self.loss_to_client)
        ):
            listener.transport.sendto(data, client)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._listener = _Side(self, None)
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self._listener,  # type: ignore[arg-type,return-value]
            local_addr=("127.0.0.1", 0),
        )
        self.port = transport.get_extra_info("sockname")[1]

    def close(self) -> None:
        for task in self._pending:
            task.cancel()
        for side in [*self._upstreams.values(), self._listener]:
            if side is not None and side.transport is not None:
                side.transport.close()


def _is_rtcp_nack(data: bytes) -> bool:
    # SRTCP leaves the first header in clear: version 2, packet type 205 (RTPFB), FMT 1.
    return len(data) >= 8 and data[0] >> 6 == 2 and data[1] == 205 and data[0] & 0x1F == 1


@contextlib.asynccontextmanager
async def lossy_relay(upstream: Address, loss: float = 0.0) -> AsyncIterator[LossyRelay]:
    """A started relay to `upstream`; closed on exit."""
    relay = LossyRelay(upstream, loss)
    await relay.start()
    try:
        yield relay
    finally:
        relay.close()
