"""Type stubs for the compiled ingest (server/media/_ingest.c)."""

from collections.abc import Callable
from typing import Any

class Estimator:
    def __init__(self) -> None: ...
    def add(
        self, arrival_time_ms: int, abs_send_time: int, payload_size: int, ssrc: int
    ) -> tuple[int, list[int]] | None: ...
    def snapshot(self) -> dict[str, float | int]: ...

class Path:
    ingest: Any
    packets: int
    fallbacks: int
    forwarded: int
    dropped: int
    def __init__(
        self,
        *,
        ingest: Any,
        dtls_vars: dict[str, Any],
        queue_items: Any,
        receivers: dict[Any, dict[str, Any]],
        connected: Any,
        queued: Callable[[bytes, int], None],
    ) -> None: ...
    def receive(self, data: bytes, component: int) -> None: ...
    def set_srtp(self, *, session: Any, unprotect: int, srtp: int) -> None: ...
    def close(self) -> None: ...

class Entry:
    path: Path
    fallback: Callable[[bytes, tuple[Any, ...]], None]
    def __init__(
        self, *, path: Path, fallback: Callable[[bytes, tuple[Any, ...]], None], component: int
    ) -> None: ...
    def __call__(self, data: bytes, addr: tuple[Any, ...]) -> None: ...

def configure(*, rtp_packet: type, header_extensions: type) -> None: ...
def configure_forwarding(
    *,
    packet_tap: type,
    on_packet: Callable[..., None],
    forward: Callable[..., Any] | None,
    audio_level_meter: type,
    datagrams_sent: object = None,
    batch: object = None,
) -> None: ...
def forward_delays() -> tuple[tuple[float, ...], tuple[int, ...], float]: ...
def configure_counting(
    *, track_counter: type, monotonic: Callable[[], float], tallied_statistics: type
) -> None: ...

class Tally:
    """A load-test receiver's counting and receiver statistics (_ingest_tally.h)."""

    packets: int
    bytes: int
    frames: int
    freezes: int
    frozen_seconds: float
    interval_sum: float
    first_seq: int
    highest: int
    has_first_seq: bool
    first_frame_at: float
    has_first_frame: bool
    last_frame_at: float
    has_last_frame: bool
    tallied: int
    clockrate: int
    base_seq: int
    has_base_seq: bool
    max_seq: int
    has_max_seq: bool
    cycles: int
    packets_received: int
    jitter_q4: int
    last_arrival: int
    last_timestamp: int
    has_last: bool
    def __init__(self, kind: str) -> None: ...
    def count(self, sequence_number: int, marker: bool, payload_size: int, now: float) -> None: ...
    def add_statistics(self, sequence_number: int, timestamp: int, now: float) -> None: ...

def observe_level(meter: Any, level: int, now: float) -> None: ...

class Reader:
    batches: int
    datagrams: int
    def __init__(self, *, entry: Entry, transport: Any, fd: int) -> None: ...
    def __call__(self) -> None: ...

def wait(
    *,
    epoll_fd: int,
    timeout: float | None,
    inline: dict[int, tuple[Any, Any]],
    ready: Any,
    scheduled: list[Any],
    max_events: int,
    on_error: Callable[[Any, BaseException | None], None],
) -> list[tuple[int, int]]: ...
def inline_runs() -> int: ...
