"""This node's live broadcasts by state, and how often their workers were restarted.

Read from the broadcast service at each scrape (`server/broadcast/service.py`:
one worker process per broadcasting room this node owns, supervised by
`WorkerSupervisor`); nothing is added to the broadcasts themselves. States,
one per broadcast:

* ``failed``: the worker exited too often and is not started again;
* ``ended``: the session ended, the worker closes the playlist;
* ``restarting``: the worker exited and the supervisor has not started it again yet;
* ``paused``: the host paused the broadcast (the worker shows the pause slate);
* ``running``: everything else.

Restarts are read from the supervisors' start counts: the counter grows by
the new starts seen since the previous scrape, so a restart of a broadcast that
went away between two scrapes is not counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

STATES = ("running", "paused", "restarting", "failed", "ended")


def broadcast_state(broadcast: Any) -> str:
    """The state of one of the service's broadcasts (see the module docstring)."""
    supervisor = broadcast.supervisor
    if supervisor.failed:
        return "failed"
    if broadcast.ended:
        return "ended"
    process = supervisor.process
    if process is None or process.returncode is not None:
        return "restarting"
    programme = broadcast.programme
    if programme is not None and programme.paused:
        return "paused"
    return "running"


class BroadcastCollector(Collector):
    """`yitang_broadcasts{state}` and `yitang_broadcast_restarts_total` of this node."""

    def __init__(self, service: Callable[[], Any]) -> None:
        #: The node's BroadcastService, or None (not running yet, or stopped).
        self._service = service
        #: id(supervisor) => its start count at the last scrape.
        self._starts: dict[int, int] = {}
        self._restarts = 0

    def describe(self) -> list[Metric]:
        """Nothing up front (the registry would otherwise collect at registration)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Count the broadcasts by state; add the worker restarts seen since the last scrape."""
        service = self._service()
        broadcasts = list(service.broadcasts.values()) if service is not None else []
        counts = dict.fromkeys(STATES, 0)
        starts: dict[int, int] = {}
        for broadcast in broadcasts:
            counts[broadcast_state(broadcast)] += 1
            supervisor = broadcast.supervisor
            started = int(supervisor.starts)
            # The first start of a worker is not a restart, whether a scrape saw the
            # broadcast before its worker was started (0 starts) or after.
            before = self._starts.get(id(supervisor), 1)
            self._restarts += max(0, started - before)
            starts[id(supervisor)] = max(started, 1)
        self._starts = starts
        gauge = GaugeMetricFamily(
            "yitang_broadcasts",
            "Live broadcasts of the rooms this node owns, by state",
            labels=["state"],
        )
        for state in STATES:
            gauge.add_metric([state], counts[state])
        yield gauge
        yield CounterMetricFamily(
            "yitang_broadcast_restarts",
            "Broadcast worker processes started again after exiting on their own",
            value=self._restarts,
        )
