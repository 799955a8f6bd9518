"""How long this process's event loop runs between two waits for I/O.

A node forwards from inside the loop's wait (server/media/event_loop.py): a
publisher's datagram is read, and its copies sent, only while the loop waits.
Everything else the loop does (callbacks, tasks, timers: signalling, RTCP
reports, metrics, a young garbage collection set off meanwhile) runs between
two waits, and every datagram that arrives then waits until it is done. A long
stretch of it is what the forward delay's tail is made of: at 21 + 63 on one
core, stretches of 5-19 ms every few seconds (the metrics sampler, collections
walking 20 000 objects) put the SFU's own p99 at 7-9 ms; without them it is
3.5 ms (README, *Load test*).

:class:`~server.media.event_loop.MediaSelector` times each stretch, from the
return of one wait to the start of the next, and counts it here; the histogram
is exported as ``yitang_event_loop_busy_seconds`` (server/metrics/server_metrics.py)
and ``yitang loadtest`` reports its window. Per process, one loop. Where the
compiled ingest is not built, the loop is asyncio's own and nothing is timed.

Two clock reads per wait, and a bucket search only for a stretch over 0.5 ms.
"""

from __future__ import annotations

from .process_histogram import HistogramCopy, ProcessHistogram

#: Upper bounds of the buckets, in seconds: 5 ms is the latency target's line,
#: 100 ms a stall.
BUSY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

_histogram = ProcessHistogram(BUSY_BUCKETS)


def observe(seconds: float) -> None:
    """Count one stretch of ``seconds`` the loop ran between two waits."""
    _histogram.observe(seconds)


def busy_times() -> HistogramCopy:
    """The histogram so far in this process."""
    return _histogram.copy()
