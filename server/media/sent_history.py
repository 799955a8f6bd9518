"""What a subscriber's RTP stream sent lately: the NACK history.

Each outgoing stream keeps its last :data:`SENT_HISTORY_SIZE` packets, as sent
(the rewritten header before encryption, and the payload), in the slot of their
sequence number modulo the size. It answers two questions:

* a subscriber's NACK: the packet with this sequence number, if still there
  (:meth:`SentHistory.get`; aiortc's ``_retransmit`` resends it);
* a subscriber's receiver report: of the numbers it counts, how many did we
  send (:meth:`SentHistory.sent_among`): what the publisher's uplink lost was
  never sent, and must not count against the receiver's link.

A stream whose receiver cannot NACK (no `nack` negotiated for its codec: Opus,
in aiortc and in browsers) keeps the sequence numbers only (``packets=False``):
the second question needs no more. Audio is most of a large session's copies
(every microphone goes to everyone), and the compiled history keeps the numbers
in 4 bytes a slot apart from the packets: a perf profile at 21 + 63 found
``history_put`` at 4 % of the node's CPU, nearly all of it cache misses on the
72-byte slots (36 kB a stream, ~1 800 streams).

The compiled fan-out writes one entry per copy it sends, so where it is built the
history is its ``_fanout.SentHistory``: the header is copied into a slot owned in
C, and the payload, one object shared by every subscriber's copy, is referenced.
A history of Python tuples cost an allocation of a tuple and of a header per
copy, and their release when the slot was reused (~3 % of the node's CPU at the
capacity load, by a perf profile). :class:`SentHistory` here is the reference both implement and
what runs where the fan-out is not built; `tests/media/test_rtp_units.py`
holds them to the same answers.
"""

from __future__ import annotations

from typing import Final, Protocol

try:
    from server.media._fanout import SentHistory as CompiledSentHistory
except ImportError:  # not built: the Python history
    CompiledSentHistory = None  # type: ignore[assignment,misc]

#: Packets kept per outgoing stream, for NACKs and for telling what was sent among a
#: receiver report's numbers: about 3 s of a 1.8 Mbit/s camera, as much as libwebrtc
#: keeps. A power of two dividing 2**16, so that a sequence number's slot does not
#: change when the numbers wrap around.
SENT_HISTORY_SIZE: Final = 512


class SentHistoryLike(Protocol):
    """What :class:`SentHistory` and the compiled ``_fanout.SentHistory`` offer."""

    def __len__(self) -> int: ...

    @property
    def keeps_packets(self) -> bool: ...

    def put(self, header: bytes, payload: bytes) -> None: ...

    def get(self, sequence_number: int) -> tuple[bytes, bytes] | None: ...

    def clear(self) -> None: ...

    def sequence_numbers(self) -> list[int]: ...

    def sent_among(self, first: int, last: int) -> tuple[int, int]: ...


class SentHistory:
    """The NACK history of one outgoing stream, in Python (see the module)."""

    def __init__(self, size: int = SENT_HISTORY_SIZE, packets: bool = True) -> None:
        if size <= 0 or 65536 % size:
            raise ValueError("the size must be a power of two dividing 65536")
        self._slots: list[tuple[bytes, bytes] | None] = [None] * size
        self._packets = packets

    def __len__(self) -> int:
        return len(self._slots)

    @property
    def keeps_packets(self) -> bool:
        """Whether the packets are kept (for NACKs), not only their sequence numbers."""
        return self._packets

    def put(self, header: bytes, payload: bytes) -> None:
        """Keep a packet just sent (`header`: its RTP header as sent, before encryption,
        at least 4 bytes) in its sequence number's slot, in place of what it held."""
        if len(header) < 4:
            raise ValueError("an RTP header has at least 4 bytes")
        entry = (header, payload) if self._packets else (header[:4], b"")
        self._slots[int.from_bytes(header[2:4], "big") % len(self._slots)] = entry

    def get(self, sequence_number: int) -> tuple[bytes, bytes] | None:
        """The packet sent with this sequence number (0..65535), if its slot still holds it
        (never, where only the numbers are kept)."""
        entry = self._slots[sequence_number % len(self._slots)]
        if not self._packets or entry is None:
            return None
        if int.from_bytes(entry[0][2:4], "big") != sequence_number & 0xFFFF:
            return None
        return entry

    def clear(self) -> None:
        """Forget every packet (the stream will not send again)."""
        self._slots = [None] * len(self._slots)

    def sequence_numbers(self) -> list[int]:
        """The sequence numbers held, in ascending order (diagnostics, tests)."""
        return sorted(int.from_bytes(h[2:4], "big") for h, _ in filter(None, self._slots))

    def sent_among(self, first: int, last: int) -> tuple[int, int]:
        """Of the sequence numbers ``first..last`` (extended: unwrapped, as a receiver
        report counts them), how many were sent, and how many the history can tell.

        A number we never sent was skipped: its packet never reached us (the
        rewriter keeps the source's gaps). A slot that a newer packet has taken
        cannot tell; an empty slot can (nothing was ever sent there).
        """
        slots = self._slots
        size = len(slots)
        sent = known = 0
        for number in range(max(first, last - size + 1), last + 1):
            entry = slots[number % size]
            if entry is None:
                known += 1
                continue
            ahead = (int.from_bytes(entry[0][2:4], "big") - number) & 0xFFFF
            if ahead == 0:
                sent += 1
                known += 1
            elif ahead >= 0x8000:
                known += 1  # an older packet holds the slot: this number was never sent
        return sent, known


def new_sent_history(packets: bool = True) -> SentHistoryLike:
    """A stream's history (``packets``: kept for NACKs, else the numbers only): the
    compiled one where the fan-out is built (the only one its streams write to), else
    :class:`SentHistory`."""
    if CompiledSentHistory is None:
        return SentHistory(packets=packets)
    return CompiledSentHistory(SENT_HISTORY_SIZE, packets=packets)
