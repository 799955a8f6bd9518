"""ServerMetrics: the metrics one node exports at `/metrics`, in its own registry.

Counted as things happen (cheap, never per media packet): Socket.IO events by
name and outcome, connects, join latency, rate-limit refusals, Redis commands,
room ownership changes, receiver reports. Read when scraped, by collectors
registered in the same registry: rooms and participants, media forwarding
counters and the forward delay, render jobs, and the process (CPU, memory, file
descriptors, garbage collections).

Each application has its own registry (no module-level state: tests run
several nodes in one process).
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from server.media import loop_busy, rtcp_handling
from server.metrics.batched_sends import BatchedSendsCollector
from server.metrics.forward_delay import ForwardDelayCollector
from server.metrics.gc_pauses import GcPauseCollector
from server.metrics.histogram_buckets import ProcessHistogramCollector
from server.metrics.labels import KNOWN_EVENTS, BoundedLabels, event_label
from server.rooms import acks

#: Outcome label of an accepted event.
OK = "ok"
#: The ack code of every rate-limit refusal (a connection's or the room owner's limits).
RATE_LIMITED = "rate_limited"

JOIN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0)
REDIS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LOSS_BUCKETS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
RTT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)


class ServerMetrics:
    """The registry of one node and the metrics counted as things happen."""

    def __init__(self, node_id: str) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        registry.register(GcPauseCollector())
        registry.register(ForwardDelayCollector())
        registry.register(BatchedSendsCollector())
        registry.register(
            ProcessHistogramCollector(
                "yitang_rtcp_handling_seconds",
                "How long this process took to handle each compound RTCP packet it received "
                "(receiver and sender reports, REMB, NACK, PLI: unprotect, parse, handlers); "
                "nothing is forwarded meanwhile",
                rtcp_handling.handling_times,
            )
        )
        registry.register(
            ProcessHistogramCollector(
                "yitang_event_loop_busy_seconds",
                "How long this process's event loop ran callbacks, tasks and timers between "
                "two waits for I/O; media datagrams arriving meanwhile were forwarded only "
                "after it",
                loop_busy.busy_times,
            )
        )
        Gauge("yitang_node_info", "This node (always 1)", ["node"], registry=registry).labels(
            node_id
        ).set(1)
        self._codes = BoundedLabels(limit=64)
        self._redis_commands = BoundedLabels(limit=64, pattern=r"[A-Z][A-Z_ ]{0,31}")
        self.events = Counter(
            "yitang_socketio_events",
            "Socket.IO events from clients by event name (`unknown` outside the protocol) "
            "and outcome (`ok` or the error code of the ack)",
            ["event", "outcome"],
            registry=registry,
        )
        self.connects = Counter(
            "yitang_socketio_connects",
            "Socket.IO connects by outcome (`ok` or the refusal code)",
            ["outcome"],
            registry=registry,
        )
        self.join_seconds = Histogram(
            "yitang_join_seconds",
            "Time from a client's join event to its accepting ack",
            buckets=JOIN_BUCKETS,
            registry=registry,
        )
        self.rate_limit_refusals = Counter(
            "yitang_rate_limit_refusals",
            "Requests refused by a rate limit: `event` (Socket.IO events), "
            "`admin_api` (an address locked out after wrong keys)",
            ["scope"],
            registry=registry,
        )
        self.redis_seconds = Histogram(
            "yitang_redis_command_seconds",
            "Redis command latency seen by this node, by command (PIPELINE for a pipeline)",
            ["command"],
            buckets=REDIS_BUCKETS,
            registry=registry,
        )
        self.redis_errors = Counter(
            "yitang_redis_errors",
            "Redis commands that failed, by command and error class",
            ["command", "error"],
            registry=registry,
        )
        self.ownership_changes = Counter(
            "yitang_room_ownership_changes",
            "Rooms this node took (`acquired`, `taken_over` from a dead or fenced owner, "
            "`handed_over` by a draining one) or let go (`released`, `lost`, `deleted`), "
            "and leases `retaken` after they ran out",
            ["change"],
            registry=registry,
        )
        self.receiver_loss = Histogram(
            "yitang_receiver_loss_ratio",
            "Fraction of forwarded packets a receiver reported lost (RTCP receiver reports, "
            "sampled), by media kind",
            ["kind"],
            buckets=LOSS_BUCKETS,
            registry=registry,
        )
        self.receiver_rtt = Histogram(
            "yitang_receiver_rtt_seconds",
            "Round-trip time to receivers from their RTCP receiver reports (sampled), by kind",
            ["kind"],
            buckets=RTT_BUCKETS,
            registry=registry,
        )
        # Series that exist from the start, so rates start at zero rather than at a gap.
        for event in sorted(KNOWN_EVENTS):
            self.events.labels(event, OK)
        self.connects.labels(OK)
        for scope in ("event", "admin_api"):
            self.rate_limit_refusals.labels(scope)
        for change in ("acquired", "taken_over", "handed_over", "released", "lost", "deleted"):
            self.ownership_changes.labels(change)

    # --- hooks the edges and the cluster call ---------------------------------------------

    def event_done(self, event: str, ack: acks.Ack, seconds: float) -> None:
        """A client event was answered with `ack` after `seconds`."""
        name = event_label(event)
        if acks.is_ok(ack):
            outcome = OK
            if name == "join":
                self.join_seconds.observe(seconds)
        else:
            detail = ack.get("error")
            outcome = self._codes(detail.get("code") if isinstance(detail, dict) else None)
            if outcome == RATE_LIMITED:
                self.rate_limit_refusals.labels("event").inc()
        self.events.labels(name, outcome).inc()

    def event_refused(self, code: str) -> None:
        """An event never reached the protocol (a reserved or malformed name)."""
        self.events.labels("unknown", self._codes(code)).inc()

    def connect_done(self, outcome: str) -> None:
        """A Socket.IO connect was accepted (`ok`) or refused with this code."""
        self.connects.labels(OK if outcome == OK else self._codes(outcome)).inc()

    def admin_locked_out(self) -> None:
        """An admin request was refused because its address is locked out."""
        self.rate_limit_refusals.labels("admin_api").inc()

    def ownership_changed(self, change: str) -> None:
        """This node took or let go of a room (see `yitang_room_ownership_changes`)."""
        self.ownership_changes.labels(self._codes(change)).inc()

    def redis_command(self, command: str, seconds: float, error: str | None) -> None:
        """A Redis command took `seconds`; `error` is the error class name if it failed."""
        label = self._redis_commands(command)
        self.redis_seconds.labels(label).observe(seconds)
        if error is not None:
            self.redis_errors.labels(label, error).inc()

    def receiver_report(self, kind: str, loss: float, rtt: float | None) -> None:
        """One receiver report of a subscriber: fraction lost and round trip (if known)."""
        label = kind if kind in ("audio", "video") else "other"
        self.receiver_loss.labels(label).observe(loss)
        if rtt is not None:
            self.receiver_rtt.labels(label).observe(rtt)
