"""How long this process takes to handle each compound RTCP packet it receives.

Subscribers send receiver reports (about one a second per stream, with REMB), NACKs
and PLIs; publishers send sender reports. The direct ingest
(:class:`~server.media.aiortc_internals.DirectIngest`) handles each compound packet
in Python inside its read of the socket: unprotect, parse, and every report's and
feedback's handler to its end. While it runs nothing else is forwarded, so its cost
is a share of the node's CPU and a wait for the packets behind it. At 12 publishers
and 36 observers on one core there are ~180 a second. The histogram is exported as
``yitang_rtcp_handling_seconds`` (server/metrics/server_metrics.py) and reported by
``yitang loadtest`` for its window. Per process, as the forward delay.

Two clock reads per compound packet (~0.1 µs against the ~200 µs measured).
"""

from __future__ import annotations

from .process_histogram import HistogramCopy, ProcessHistogram

#: Upper bounds of the buckets, in seconds: fine around the 0.1-0.4 ms a compound
#: packet takes under load, coarse beyond (a handler that waited, a slow machine).
HANDLING_BUCKETS = (
    0.000025,
    0.00005,
    0.0001,
    0.00015,
    0.0002,
    0.00025,
    0.0003,
    0.0004,
    0.0005,
    0.00075,
    0.001,
    0.002,
    0.005,
    0.01,
    0.1,
)


_histogram = ProcessHistogram(HANDLING_BUCKETS)


def observe(seconds: float) -> None:
    """Count one compound RTCP packet handled in ``seconds``."""
    _histogram.observe(seconds)


def handling_times() -> HistogramCopy:
    """The histogram so far in this process."""
    return _histogram.copy()
