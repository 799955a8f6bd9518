"""Benchmark: the compiled fan-out's batched sends (UDP GSO) against one ``sendto`` a copy.

    python bench/batched_sends.py                  # 16 subscribers, bursts of 8 packets
    python bench/batched_sends.py --subscribers 47 --burst 16 --json

The product's own send path, in one process: ``fanout.forward`` protects each copy
(the server's own AES-GCM where built, as a node does for a GCM transport, else
libsrtp) and sends it on the subscriber's own UDP socket to a receiver socket on
127.0.0.1, exactly as a node forwards a publisher's packets. Each round forwards
bursts of ``--burst`` 1 100-byte packets (a video frame read from the publisher's
socket at once) to every subscriber, first batched (``open_batch`` / ``send_batch``
around the burst, as the compiled ingest's reader does), then with batching off
(``set_gso(False)``: each copy sent as it is made), alternately. It prints the CPU
time of the sending process per copy for each and their ratio (batched / not), the
median over the rounds. The receivers are drained between bursts, outside the timing.

On loopback a send also delivers the datagram to the receiving socket in the sender's
system call, so both figures include the receive side, which a real network card
would not cost the node; the ratio understates what batching saves there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from pylibsrtp import Policy, Session

from server.media import fanout, outbound_srtp
from server.media.aiortc_internals import SrtpProtector
from server.media.outbound_srtp import OutboundSrtpProtector
from server.media.rtp_header import OutgoingHeader
from server.media.sent_history import new_sent_history

ROUNDS = 7
PAYLOAD_SIZE = 1100
PUBLISHER_SSRC = 0x5EED


class Subscriber:
    """One subscriber: a compiled stream on its own socket, and the socket it sends to."""

    def __init__(self, index: int, transport: asyncio.DatagramTransport) -> None:
        self.receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.receiver.bind(("127.0.0.1", 0))
        self.receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.receiver.setblocking(False)
        self.transport = transport
        key, salt = os.urandom(32), os.urandom(12)
        policy = Policy(
            key=key + salt,
            ssrc_type=Policy.SSRC_ANY_OUTBOUND,
            srtp_profile=Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
        )
        policy.allow_repeat_tx = True
        protector: SrtpProtector | OutboundSrtpProtector
        if outbound_srtp.available():
            session = outbound_srtp.OutboundSrtpSession(key, salt, rtcp=Session(policy))
            protector = OutboundSrtpProtector(session)
        else:
            protector = SrtpProtector(Session(policy))
        ssrc = 0x1000 + index
        self.stream = fanout.new_stream(
            ssrc=ssrc,
            payload_type=96,
            clock_rate=90_000,
            header=OutgoingHeader(
                ssrc=ssrc,
                payload_type=96,
                mid=str(index),
                extensions_map=HeaderExtensionsMap(),
                extension="abs_send_time",
            ),
        )
        self.stream.set_history(new_sent_history())  # type: ignore[arg-type]
        host, port = self.receiver.getsockname()
        self.stream.connect(
            **protector.fast_path(),
            transport=transport,
            fd=transport.get_extra_info("socket").fileno(),
            host=host,
            port=port,
        )
        self.received = 0

    def follow(self, first: RtpPacket) -> None:
        """Make `first` the stream's current source (what the Python path's first packet
        does), so that the compiled fan-out sends the next ones itself."""
        now = time.monotonic()
        self.stream.resync(first, now)
        self.stream.map_sequence(first, now)
        self.stream.enabled = True

    def drain(self) -> None:
        while True:
            try:
                self.receiver.recv(2048)
            except BlockingIOError:
                return
            self.received += 1

    def close(self) -> None:
        self.stream.disconnect()
        self.transport.close()
        self.receiver.close()


async def run(subscribers: int, burst: int, bursts: int) -> dict[str, object]:
    if not fanout.available():
        raise SystemExit(f"the compiled fan-out is not built: {fanout.IMPORT_ERROR}")
    loop = asyncio.get_running_loop()
    subs: list[Subscriber] = []
    for index in range(subscribers):
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )
        subs.append(Subscriber(index, transport))
    streams = tuple(sub.stream for sub in subs)
    payload = bytes([0x10, 0x00]) + os.urandom(PAYLOAD_SIZE - 2)  # a VP8 delta packet
    seq = 1
    first = RtpPacket(payload_type=96, sequence_number=seq, timestamp=0, ssrc=PUBLISHER_SSRC)
    for sub in subs:
        sub.follow(first)

    def forward_bursts(batched: bool) -> float:
        """CPU seconds of this process to forward `bursts` bursts (receivers drained
        between them, untimed)."""
        nonlocal seq
        fanout.set_gso(batched)
        spent = 0.0
        for _ in range(bursts):
            started = time.process_time()
            if batched:
                fanout.open_batch()
            for _ in range(burst):
                seq += 1
                handed_back = fanout.forward(
                    streams, 0, seq & 0xFFFF, seq * 90, PUBLISHER_SSRC, payload, 0, 0, 0.0
                )
                if handed_back:
                    raise SystemExit(f"the fan-out handed copies back to Python: {handed_back}")
            if batched:
                fanout.send_batch()
            spent += time.process_time() - started
            for sub in subs:
                sub.drain()
        return spent

    copies = bursts * burst * subscribers
    timings: dict[str, list[float]] = {"batched": [], "each": []}
    gso_before = fanout.gso_stats()
    try:
        forward_bursts(True)  # warm-up: caches, the receivers' buffers
        forward_bursts(False)
        for _ in range(ROUNDS):
            timings["batched"].append(forward_bursts(True) / copies)
            timings["each"].append(forward_bursts(False) / copies)
    finally:
        fanout.set_gso(True)
        gso = fanout.gso_stats()
        for sub in subs:
            sub.drain()
            sub.close()
    sent = (ROUNDS + 1) * 2 * copies
    received = sum(sub.received for sub in subs)
    batched_us = statistics.median(timings["batched"]) * 1e6
    each_us = statistics.median(timings["each"]) * 1e6
    return {
        "subscribers": subscribers,
        "burst": burst,
        "copies_per_round": copies,
        "srtp": "own" if outbound_srtp.available() else "libsrtp",
        "batched_us_per_copy": round(batched_us, 3),
        "each_us_per_copy": round(each_us, 3),
        "ratio": round(batched_us / each_us, 3),
        "gso_sends": gso["sends"] - gso_before["sends"],
        "gso_refused": gso["refused"] - gso_before["refused"],
        "received": received,
        "sent": sent,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=16)
    parser.add_argument("--burst", type=int, default=8, help="packets read at once (1-16)")
    parser.add_argument("--bursts", type=int, default=200, help="per round and mode")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    if not 1 <= args.subscribers <= 256:
        parser.error("--subscribers must be 1..256")
    if not 1 <= args.burst <= 16:
        parser.error("--burst must be 1..16 (what the ingest's reader reads at once)")
    if args.bursts < 1:
        parser.error("--bursts must be at least 1")
    result = asyncio.run(run(args.subscribers, args.burst, args.bursts))
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{result['subscribers']} subscribers, bursts of {result['burst']} packets of "
        f"{PAYLOAD_SIZE} bytes, SRTP: {result['srtp']}; {result['received']} of "
        f"{result['sent']} copies received, {result['gso_sends']} GSO sends"
    )
    print(f"{'batched µs/copy':>16} {'each µs/copy':>12} {'batched/each':>13}")
    print(
        f"{result['batched_us_per_copy']:>16.2f} {result['each_us_per_copy']:>12.2f}"
        f" {result['ratio']:>13.2f}"
    )


if __name__ == "__main__":
    main()
