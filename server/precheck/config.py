"""Settings of the pre-session check: how long it measures, how many run at once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PrecheckSettings:
    """Bounds and targets of one probe (one leg: direct or relay)."""

    #: Probes running at once on one node; more are refused (503 `precheck_busy`).
    concurrency: int = 8
    #: Probe starts one identity may make in a burst, and the refill rate per second.
    identity_burst: float = 6.0
    identity_rate: float = 1 / 20
    #: Pings the server sends, and how far apart (seconds).
    pings: int = 40
    ping_interval: float = 0.05
    #: How long a ping's echo may take before it counts as lost.
    ping_grace: float = 1.0
    #: The uplink probe: seconds of data the browser sends at `upload_kbps`.
    upload_seconds: float = 3.0
    upload_kbps: int = 1500
    #: Size of one upload chunk (bytes; larger messages are not counted).
    upload_chunk: int = 1000
    #: The browser must connect within this long, or the leg fails (`no_connection`).
    connect_timeout: float = 15.0
    #: A probe is closed after this long, whatever state it is in.
    max_seconds: float = 30.0
    #: Stored results live this long (the control room shows them until then).
    result_ttl_seconds: int = 24 * 3600

    def __post_init__(self) -> None:
        if not 1 <= self.concurrency <= 256:
            raise ValueError("precheck concurrency must be between 1 and 256")
        if not 1 <= self.pings <= 200 or not 0.01 <= self.ping_interval <= 1:
            raise ValueError("precheck pings: 1-200, 10 ms to 1 s apart")
        if not 0.5 <= self.upload_seconds <= 10 or not 50 <= self.upload_kbps <= 20_000:
            raise ValueError("precheck upload: 0.5-10 s at 50-20000 kbit/s")
        if not 100 <= self.upload_chunk <= 1200:
            raise ValueError("precheck upload chunks are 100-1200 bytes")
        if self.connect_timeout <= 0 or self.max_seconds < self.connect_timeout:
            raise ValueError("precheck timeouts must be positive, the total not shorter")
