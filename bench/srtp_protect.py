"""Benchmark: the server's own outbound SRTP against libsrtp, per protected packet.

    python bench/srtp_protect.py                 # 200 000 packets per case
    python bench/srtp_protect.py --packets 2000 --json

Each case protects the same RTP packets (a 1 000-byte payload behind a 20-byte header
with one extension, as a forwarded video packet) with pylibsrtp's ``Session.protect``
(libsrtp 2.7 in pylibsrtp's wheel, what aiortc uses) and with
``server.media.outbound_srtp.OutboundSrtpSession.protect``, both called from Python, for
AES-128-GCM and AES-256-GCM, with the packets spread over 1 and over 28 SSRCs (a
subscriber connection of a 14-venue session sends ~28 streams). Sequence numbers
advance as a sender's do. The two are timed alternately, in rounds, in one process, and
the ratio (own / libsrtp) is printed per case. The loop is hot in the cache: under load
each copy finds its transport's state cold, which costs both alike (docs/forwarding.md,
*Outbound SRTP*).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pylibsrtp import Policy, Session

from server.media import outbound_srtp

PROFILES = {
    "AES-128-GCM": (Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16),
    "AES-256-GCM": (Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 32),
}
ROUNDS = 5


def packets(streams: int, count: int, first: int) -> list[bytes]:
    """`count` packets over `streams` SSRCs; each SSRC's sequence numbers run from `first`."""
    payload = os.urandom(1000)
    extension = struct.pack("!HH", 0xBEDE, 1) + bytes([0x22, 1, 2, 3])
    return [
        struct.pack("!BBHII", 0x90, 96, (first + i // streams) & 0xFFFF, 90 * i, 1000 + i % streams)
        + extension
        + payload
        for i in range(count)
    ]


def time_per_packet(protect: Callable[[bytes], bytes], batch: list[bytes]) -> float:
    started = time.perf_counter()
    for packet in batch:
        protect(packet)
    return (time.perf_counter() - started) / len(batch)


def run(count: int) -> list[dict[str, object]]:
    if not outbound_srtp.available():
        raise SystemExit(f"the outbound SRTP is not built: {outbound_srtp.IMPORT_ERROR}")
    results = []
    for name, (profile, key_length) in PROFILES.items():
        for streams in (1, 28):
            key, salt = os.urandom(key_length), os.urandom(12)
            policy = Policy(
                key=key + salt, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile
            )
            policy.allow_repeat_tx = True  # aiortc's outbound policy
            policy.window_size = 1024
            libsrtp = Session(policy)
            own = outbound_srtp.OutboundSrtpSession(key, salt, rtcp=Session(policy))
            per_round = count // ROUNDS
            timings: dict[str, list[float]] = {"libsrtp": [], "own": []}
            for round_ in range(ROUNDS):
                # Each round, the next packets of every stream: no index is protected twice.
                batch = packets(streams, per_round, round_ * per_round // streams)
                timings["libsrtp"].append(time_per_packet(libsrtp.protect, batch))
                timings["own"].append(time_per_packet(own.protect, batch))
            libsrtp_us = statistics.median(timings["libsrtp"]) * 1e6
            own_us = statistics.median(timings["own"]) * 1e6
            results.append(
                {
                    "profile": name,
                    "streams": streams,
                    "libsrtp_us": round(libsrtp_us, 3),
                    "own_us": round(own_us, 3),
                    "ratio": round(own_us / libsrtp_us, 3),
                }
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=200_000, help="per case, in all rounds")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    if args.packets < ROUNDS * 28:
        parser.error(f"--packets must be at least {ROUNDS * 28}")
    results = run(args.packets)
    if args.json:
        print(json.dumps(results))
        return
    print(f"{'profile':12} {'streams':>7} {'libsrtp µs':>11} {'own µs':>8} {'own/libsrtp':>12}")
    for r in results:
        print(
            f"{r['profile']:12} {r['streams']:>7} {r['libsrtp_us']:>11.2f}"
            f" {r['own_us']:>8.2f} {r['ratio']:>12.2f}"
        )


if __name__ == "__main__":
    main()
